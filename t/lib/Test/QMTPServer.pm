package Test::QMTPServer;

# A scripted fake QMTP server for tests.
#
# new() binds 127.0.0.1:0 in the parent (so the port is known at once and
# there is no start-up race), then forks.  The child accepts connections one
# at a time and runs the test's script on each.  Every byte the child reads
# is appended to "conn-N.in" in a temp dir before the script sees it, so the
# parent can assert exact wire bytes even when the script stalls.
#
# Files in the temp dir (child writes, parent reads):
#   conn-N.in    all bytes received on connection N (created at accept)
#   conn-N.eof   exists once EOF (or a reset) was seen from the client
#   conn-N.err   the script's error, if it died
#   conn-N.done  exists once the script returned and the socket was closed

use strict;
use warnings;

use Carp qw(croak);
use IO::Socket::INET;
use POSIX ();
use File::Temp qw(tempdir);
use Socket qw(SOL_SOCKET SO_RCVBUF);
use Time::HiRes ();

our $VERSION = '0.01';

# A thread's clone must not stop the server when the thread ends.
sub CLONE_SKIP { 1 }

# child pid => pid of the process that created it; lets END and DESTROY
# clean up only what this very process started.
our %RUNNING;

my $DEFAULT_TIMEOUT  = 30;
my $DEFAULT_LIFETIME = 300;

# ---------------------------------------------------------------------
# Netstring / package helpers (pure functions, usable from tests too)
# ---------------------------------------------------------------------

sub netstring {
	my ($s) = @_;
	return length($s) . ':' . $s . ',';
}

# Look for one netstring at $pos in $$ref.  Works on a reference so a big
# buffer is never copied while we wait for more bytes.
#   ('ok', $payload, $end_pos)
#   ('short', $bytes_needed)  -- minimum bytes that must arrive to progress
#   ('bad', $reason)
sub _ns_at {
	my ($ref, $pos) = @_;
	my $len = length $$ref;
	my $i = $pos;
	while ($i < $len) {
		my $c = substr($$ref, $i, 1);
		last if $c lt '0' || $c gt '9';
		$i++;
	}
	my $ndig = $i - $pos;
	return ('bad', 'netstring length too long') if $ndig > 9;
	return ('bad', 'netstring length has a leading zero')
		if $ndig > 1 && substr($$ref, $pos, 1) eq '0';
	# Still reading the length: ask for one more byte only, so that we
	# never read past the end of what the client meant to send.
	return ('short', 1) if $i >= $len;
	return ('bad', 'netstring: expected digit or colon')
		if $ndig == 0 || substr($$ref, $i, 1) ne ':';
	my $n = 0 + substr($$ref, $pos, $ndig);
	my $end = $i + 1 + $n + 1;
	return ('short', $end - $len) if $end > $len;
	return ('bad', 'netstring missing comma') if substr($$ref, $end - 1, 1) ne ',';
	return ('ok', substr($$ref, $i + 1, $n), $end);
}

# One QMTP package at $pos: ('ok', $hashref, $end) / ('short', $n) / ('bad', $why)
sub _package_at {
	my ($ref, $pos) = @_;
	my @r1 = _ns_at($ref, $pos);
	return @r1 unless $r1[0] eq 'ok';
	my @r2 = _ns_at($ref, $r1[2]);
	return @r2 unless $r2[0] eq 'ok';
	my @r3 = _ns_at($ref, $r2[2]);
	return @r3 unless $r3[0] eq 'ok';

	my $list = $r3[1];
	my @rcpts;
	my $p = 0;
	while ($p < length $list) {
		my @r = _ns_at(\$list, $p);
		return ('bad', "bad recipient list ($r[1])") if $r[0] eq 'bad';
		return ('bad', 'truncated recipient list') if $r[0] eq 'short';
		push @rcpts, $r[1];
		$p = $r[2];
	}
	my $end = $r3[2];
	# Lenient on the encoding byte: tests want to see what the client sent.
	my $pkg = {
		enc        => substr($r1[1], 0, 1),
		message    => length($r1[1]) ? substr($r1[1], 1) : '',
		sender     => $r2[1],
		recipients => \@rcpts,
		raw        => substr($$ref, $pos, $end - $pos),
	};
	return ('ok', $pkg, $end);
}

# All complete packages in a byte string, stopping at the first incomplete
# or malformed one.
sub parse_packages {
	my ($bytes) = @_;
	my @pkgs;
	my $pos = 0;
	while ($pos < length $bytes) {
		my @r = _package_at(\$bytes, $pos);
		last unless $r[0] eq 'ok';
		push @pkgs, $r[1];
		$pos = $r[2];
	}
	return @pkgs;
}

# ---------------------------------------------------------------------
# Parent side
# ---------------------------------------------------------------------

sub new {
	my $class = shift;
	my %opt;
	if (@_ == 1 && ref $_[0] eq 'CODE') {
		%opt = (script => $_[0]);
	} else {
		croak 'Test::QMTPServer->new(sub {...}) or ->new(script => sub {...}, ...)'
			if @_ % 2;
		%opt = @_;
	}
	croak 'script must be a code reference' unless ref $opt{script} eq 'CODE';

	my $dir = tempdir('qmtpsrv-XXXXXX', TMPDIR => 1, CLEANUP => 1);
	my $listen = IO::Socket::INET->new(
		LocalAddr => '127.0.0.1',
		LocalPort => 0,
		Proto     => 'tcp',
		Listen    => 16,
		ReuseAddr => 1,
	) or croak "Test::QMTPServer: cannot listen on 127.0.0.1: $@";
	if ($opt{rcvbuf}) {
		# Set on the listener so accepted sockets inherit it before the
		# handshake (the advertised window is chosen then).
		setsockopt($listen, SOL_SOCKET, SO_RCVBUF, $opt{rcvbuf})
			or croak "setsockopt SO_RCVBUF: $!";
	}

	my $self = bless {
		dir             => $dir,
		port            => $listen->sockport,
		host            => '127.0.0.1',
		script          => $opt{script},
		max_connections => $opt{max_connections},
		timeout         => defined $opt{timeout} ? $opt{timeout} : $DEFAULT_TIMEOUT,
		lifetime        => defined $opt{lifetime} ? $opt{lifetime} : $DEFAULT_LIFETIME,
		creator         => $$,
	}, $class;

	my $ppid = $$;
	my $pid = fork;
	croak "Test::QMTPServer: fork failed: $!" unless defined $pid;
	if ($pid == 0) {
		# Never return into the test's code: whatever happens, _exit.
		eval { $self->_child_main($listen, $ppid); 1 }
			or warn "Test::QMTPServer child: $@";
		POSIX::_exit(0);
	}
	close $listen;
	$self->{pid} = $pid;
	$RUNNING{$pid} = $$;
	return $self;
}

sub port { $_[0]{port} }
sub host { $_[0]{host} }
sub pid  { $_[0]{pid} }
sub dir  { $_[0]{dir} }

sub _slurp {
	my ($file) = @_;
	open my $fh, '<', $file or return undef;
	binmode $fh;
	local $/;
	my $data = <$fh>;
	close $fh;
	return defined $data ? $data : '';
}

sub received {
	my ($self, $n) = @_;
	$n = 0 unless defined $n;
	my $data = _slurp("$self->{dir}/conn-$n.in");
	return defined $data ? $data : '';
}

sub packages {
	my ($self, $n) = @_;
	return parse_packages($self->received($n));
}

sub connections {
	my ($self) = @_;
	opendir my $dh, $self->{dir} or return 0;
	my $count = grep { /^conn-\d+\.in\z/ } readdir $dh;
	closedir $dh;
	return $count;
}

sub client_closed {
	my ($self, $n) = @_;
	$n = 0 unless defined $n;
	return -e "$self->{dir}/conn-$n.eof" ? 1 : 0;
}

# Extra: has the script for connection $n returned (socket closed)?
sub script_done {
	my ($self, $n) = @_;
	$n = 0 unless defined $n;
	return -e "$self->{dir}/conn-$n.done" ? 1 : 0;
}

# Extra: the error the script for connection $n died with, or undef.
sub script_error {
	my ($self, $n) = @_;
	$n = 0 unless defined $n;
	return _slurp("$self->{dir}/conn-$n.err");
}

sub _poll {
	my ($cond, $timeout) = @_;
	$timeout = 10 unless defined $timeout;
	my $deadline = Time::HiRes::time() + $timeout;
	while (1) {
		return 1 if $cond->();
		return 0 if Time::HiRes::time() >= $deadline;
		Time::HiRes::sleep(0.02);
	}
}

sub wait_connections {
	my ($self, $count, $timeout) = @_;
	return _poll(sub { $self->connections >= $count }, $timeout);
}

sub wait_closed {
	my ($self, $n, $timeout) = @_;
	return _poll(sub { $self->client_closed($n) }, $timeout);
}

sub wait_done {
	my ($self, $n, $timeout) = @_;
	return _poll(sub { $self->script_done($n) }, $timeout);
}

# TERM, give it a moment, then KILL; always reap so no zombie is left.
sub _terminate {
	my ($pid) = @_;
	local ($?, $!);
	delete $RUNNING{$pid};
	kill 'TERM', $pid;
	my $deadline = Time::HiRes::time() + 3;
	while (Time::HiRes::time() < $deadline) {
		my $r = waitpid($pid, POSIX::WNOHANG());
		return if $r == $pid || $r == -1;
		Time::HiRes::sleep(0.01);
	}
	kill 'KILL', $pid;
	waitpid($pid, 0);
}

sub stop {
	my ($self) = @_;
	return unless $self->{pid} && $self->{creator} == $$;
	my $pid = delete $self->{pid};
	_terminate($pid) if exists $RUNNING{$pid};
	return 1;
}

sub DESTROY {
	my ($self) = @_;
	$self->stop if $self->{creator} && $self->{creator} == $$;
}

# Safety net for servers kept in globals or leaked: runs before global
# destruction.  _terminate localizes $? so the test's exit code survives.
END {
	for my $pid (keys %RUNNING) {
		_terminate($pid) if $RUNNING{$pid} == $$;
	}
}

# ---------------------------------------------------------------------
# Child side
# ---------------------------------------------------------------------

# Close every descriptor the test had open (client sockets especially):
# a copy held here would stop another server from ever seeing EOF.
sub _close_inherited_fds {
	my %keep = map { $_ => 1 } @_;
	my @fds;
	if (opendir my $dh, '/proc/self/fd') {
		@fds = grep { /^\d+\z/ } readdir $dh;
		closedir $dh;
	} else {
		@fds = (3 .. 255);
	}
	for my $fd (@fds) {
		next if $fd <= 2 || $keep{$fd};
		POSIX::close($fd);
	}
}

sub _child_main {
	my ($self, $listen, $ppid) = @_;

	$SIG{$_} = 'DEFAULT' for qw(TERM INT HUP QUIT CHLD);
	$SIG{__DIE__} = 'DEFAULT';
	$SIG{PIPE} = 'IGNORE';
	# Hard cap on lifetime, whatever the script does.
	$SIG{ALRM} = sub { POSIX::_exit(0) };
	alarm($self->{lifetime});
	$0 = "Test::QMTPServer 127.0.0.1:$self->{port}";

	# Keep the test's TAP stream clean; warnings still go to STDERR.
	open STDOUT, '>', '/dev/null';
	_close_inherited_fds(fileno($listen));

	my $start = time;
	my $n = 0;
	while (1) {
		last if defined $self->{max_connections} && $n >= $self->{max_connections};
		_check_parent($ppid);
		my $rin = '';
		vec($rin, fileno($listen), 1) = 1;
		my $nready = select(my $rout = $rin, undef, undef, 0.25);
		next unless $nready && $nready > 0;
		my $sock = $listen->accept or next;

		my $conn = Test::QMTPServer::Conn->_new(
			sock    => $sock,
			index   => $n,
			dir     => $self->{dir},
			timeout => $self->{timeout},
			ppid    => $ppid,
		);
		my $ok = eval { $self->{script}->($conn, $n); 1 };
		if (!$ok) {
			my $err = defined $@ ? "$@" : 'unknown error';
			_write_file("$self->{dir}/conn-$n.err", $err);
			warn "Test::QMTPServer: script for connection $n died: $err";
		}
		$conn->close;
		_write_file("$self->{dir}/conn-$n.done", '');
		$n++;
	}
	# max_connections reached: closing the listener makes further
	# connects fail with "connection refused"; then the child exits.
	close $listen;
	POSIX::_exit(0);
}

sub _check_parent {
	my ($ppid) = @_;
	POSIX::_exit(0) if getppid() != $ppid;
}

sub _write_file {
	my ($file, $data) = @_;
	if (open my $fh, '>', $file) {
		binmode $fh;
		print $fh $data;
		close $fh;
	}
}

# ---------------------------------------------------------------------
# Connection object handed to the script (child side only)
# ---------------------------------------------------------------------

package Test::QMTPServer::Conn;

use strict;
use warnings;
use Carp qw(croak);
use POSIX ();
use Fcntl qw(O_WRONLY O_CREAT O_APPEND);
use Socket qw(SOL_SOCKET SO_RCVBUF);
use Time::HiRes ();
use Errno qw(EINTR EAGAIN EWOULDBLOCK);

sub _new {
	my ($class, %a) = @_;
	my $self = bless {
		%a,
		buf          => '',
		eof          => 0,
		timed_out    => 0,
		error        => undef,
		last_package => undef,
		closed       => 0,
	}, $class;
	# Record file exists from the moment of accept: connections() counts it.
	sysopen(my $rec, "$a{dir}/conn-$a{index}.in", O_WRONLY | O_CREAT | O_APPEND)
		or die "Test::QMTPServer: cannot create record file: $!";
	binmode $rec;
	$self->{rec} = $rec;
	# Non-blocking, so every read and write can honour the deadline.
	$a{sock}->blocking(0);
	return $self;
}

sub socket       { $_[0]{sock} }
sub index        { $_[0]{index} }
sub eof          { $_[0]{eof} }
sub timed_out    { $_[0]{timed_out} }
sub error        { $_[0]{error} }
sub last_package { $_[0]{last_package} }

sub timeout {
	my $self = shift;
	$self->{timeout} = shift if @_;
	return $self->{timeout};
}

sub _deadline {
	my ($self, $secs) = @_;
	$secs = $self->{timeout} unless defined $secs;
	return Time::HiRes::time() + $secs;
}

sub _mark_eof {
	my ($self, $how) = @_;
	return if $self->{eof};
	$self->{eof} = 1;
	Test::QMTPServer::_write_file("$self->{dir}/conn-$self->{index}.eof", $how);
}

# Read at most $max bytes into the buffer (recording them first).
# Returns bytes read, 0 on EOF, undef on timeout.
sub _read_some {
	my ($self, $max, $deadline) = @_;
	return 0 if $self->{eof} || $self->{closed};
	my $sock = $self->{sock};
	while (1) {
		Test::QMTPServer::_check_parent($self->{ppid});
		my $left = $deadline - Time::HiRes::time();
		if ($left <= 0) {
			$self->{timed_out} = 1;
			return undef;
		}
		my $rin = '';
		vec($rin, fileno($sock), 1) = 1;
		my $nready = select(my $rout = $rin, undef, undef, $left < 0.25 ? $left : 0.25);
		next unless $nready && $nready > 0;
		my $chunk;
		my $got = sysread($sock, $chunk, $max);
		if (!defined $got) {
			next if $! == EINTR || $! == EAGAIN || $! == EWOULDBLOCK;
			# A reset means the client is gone, too.
			$self->{error} = "read: $!";
			$self->_mark_eof("error: $!");
			return 0;
		}
		if ($got == 0) {
			$self->_mark_eof('eof');
			return 0;
		}
		syswrite($self->{rec}, $chunk);    # record before anyone sees it
		$self->{buf} .= $chunk;
		return $got;
	}
}

sub read_package {
	my ($self) = @_;
	my $deadline = $self->_deadline;
	while (1) {
		my @r = Test::QMTPServer::_package_at(\$self->{buf}, 0);
		if ($r[0] eq 'ok') {
			substr($self->{buf}, 0, $r[2], '');
			$self->{last_package} = $r[1];
			return $r[1];
		}
		if ($r[0] eq 'bad') {
			$self->{error} = $r[1];
			return undef;
		}
		# 'short': read exactly what is still missing of the current
		# netstring, never beyond the end of the package.
		my $got = $self->_read_some($r[1], $deadline);
		return undef unless $got;
	}
}

sub read_bytes {
	my ($self, $n) = @_;
	my $deadline = $self->_deadline;
	while (length($self->{buf}) < $n) {
		my $got = $self->_read_some($n - length($self->{buf}), $deadline);
		last unless $got;
	}
	return substr($self->{buf}, 0, $n, '');
}

sub read_until_eof {
	my ($self) = @_;
	my $deadline = $self->_deadline;
	while (1) {
		my $got = $self->_read_some(65536, $deadline);
		last unless $got;
	}
	my $data = $self->{buf};
	$self->{buf} = '';
	return $data;
}

sub wait_eof {
	my ($self, $secs) = @_;
	my $deadline = $self->_deadline($secs);
	while (!$self->{eof}) {
		my $got = $self->_read_some(65536, $deadline);
		last unless $got;
	}
	$self->{buf} = '';    # already recorded; the caller wants it gone
	return $self->{eof} ? 1 : 0;
}

# Returns true if everything was written; false on EPIPE/reset/timeout.
sub write {
	my ($self, $bytes) = @_;
	return 0 if $self->{closed};
	my $sock = $self->{sock};
	my $deadline = $self->_deadline;
	my $off = 0;
	my $len = length $bytes;
	while ($off < $len) {
		Test::QMTPServer::_check_parent($self->{ppid});
		my $left = $deadline - Time::HiRes::time();
		if ($left <= 0) {
			$self->{timed_out} = 1;
			return 0;
		}
		my $win = '';
		vec($win, fileno($sock), 1) = 1;
		my $nready = select(undef, my $wout = $win, undef, $left < 0.25 ? $left : 0.25);
		next unless $nready && $nready > 0;
		my $w = syswrite($sock, $bytes, $len - $off, $off);
		if (!defined $w) {
			next if $! == EINTR || $! == EAGAIN || $! == EWOULDBLOCK;
			$self->{error} = "write: $!";
			return 0;
		}
		$off += $w;
	}
	return 1;
}

sub write_slowly {
	my ($self, $bytes, $delay) = @_;
	$delay = 0.01 unless defined $delay;
	for my $i (0 .. length($bytes) - 1) {
		$self->sleep($delay) if $i;
		$self->write(substr($bytes, $i, 1)) or return 0;
	}
	return 1;
}

sub respond {
	my ($self, @texts) = @_;
	return $self->write(join '', map { Test::QMTPServer::netstring($_) } @texts);
}

sub answer_all {
	my ($self, $code, $text) = @_;
	$text = '' unless defined $text;
	my $pkg = $self->{last_package}
		or croak 'answer_all: no package has been read on this connection';
	my $n = @{ $pkg->{recipients} };
	return $self->respond(("$code$text") x $n);
}

# Sleep in slices so a vanished parent is still noticed.
sub sleep {
	my ($self, $secs) = @_;
	my $deadline = Time::HiRes::time() + $secs;
	while (1) {
		Test::QMTPServer::_check_parent($self->{ppid});
		my $left = $deadline - Time::HiRes::time();
		last if $left <= 0;
		Time::HiRes::sleep($left < 0.25 ? $left : 0.25);
	}
	return 1;
}

sub shutdown_write {
	my ($self) = @_;
	return 0 if $self->{closed};
	return shutdown($self->{sock}, 1) ? 1 : 0;
}

sub close {
	my ($self) = @_;
	return 0 if $self->{closed};
	$self->{closed} = 1;
	CORE::close($self->{sock});
	CORE::close($self->{rec});
	return 1;
}

sub set_rcvbuf {
	my ($self, $bytes) = @_;
	return setsockopt($self->{sock}, SOL_SOCKET, SO_RCVBUF, $bytes) ? 1 : 0;
}

1;

package Test::Mailfront;

# Runs the real QMTP server mailfront under tcpserver on 127.0.0.1 for
# interoperability tests.
#
# Process layout (so that nothing can outlive the test):
#   test  --fork-->  watchdog (perl; setsid, own session)
#                       --fork+exec-->  tcpserver (own process group T)
#                                          --> mailfront per connection (group T)
# The watchdog notices when the test process disappears (even if it was
# killed by a signal and ran no DESTROY/END) or when asked to stop, and
# then kills process group T and reaps everything.

use strict;
use warnings;

use Carp qw(croak);
use IO::Socket::INET;
use POSIX ();
use File::Temp qw(tempdir);
use Time::HiRes ();
use Config;

our $VERSION = '0.01';

# A thread's clone must not stop the server when the thread ends.
sub CLONE_SKIP { 1 }

# watchdog pid => creating pid (see Test::QMTPServer for why)
our %RUNNING;

my $DEFAULT_LIFETIME = 300;

# ---------------------------------------------------------------------
# Finding the programs
# ---------------------------------------------------------------------

# mailfront lives in /usr/sbin on Debian, often not in a non-root PATH.
sub _find_program {
	my ($name, @extra) = @_;
	my @dirs = (split(/:/, defined $ENV{PATH} ? $ENV{PATH} : ''), @extra);
	for my $d (@dirs) {
		next unless length $d;
		my $f = "$d/$name";
		return $f if -f $f && -x _;
	}
	return undef;
}

sub tcpserver_path {
	return _find_program('tcpserver', qw(/usr/bin /usr/local/bin /usr/sbin /usr/local/sbin));
}

sub mailfront_path {
	return _find_program('mailfront', qw(/usr/sbin /usr/local/sbin /usr/bin /usr/local/bin));
}

# Names of the missing programs (empty list when all is there).
sub missing {
	my @m;
	push @m, 'tcpserver (Debian package ucspi-tcp)' unless tcpserver_path();
	push @m, 'mailfront (Debian package mailfront)' unless mailfront_path();
	return @m;
}

sub available {
	return missing() ? 0 : 1;
}

sub require_or_skip {
	my @missing = missing();
	return 1 unless @missing;
	require Test::More;
	if ($ENV{NET_QMTP_REQUIRE_MAILFRONT}) {
		my $what = join ', ', @missing;
		Test::More::diag("NET_QMTP_REQUIRE_MAILFRONT is set but not found: $what");
		Test::More::BAIL_OUT("mailfront/tcpserver required (NET_QMTP_REQUIRE_MAILFRONT) but missing: $what");
	}
	Test::More::plan(skip_all => 'mailfront and tcpserver (Debian: mailfront, ucspi-tcp) not installed');
	return 0;    # not reached: plan skip_all exits
}

# ---------------------------------------------------------------------
# Start / stop
# ---------------------------------------------------------------------

sub start {
	my ($class, %opt) = @_;
	my @missing = missing();
	croak 'Test::Mailfront: missing ' . join(', ', @missing) if @missing;

	my $plugins = $opt{plugins} || ['accept'];
	my $backend = defined $opt{backend} ? $opt{backend} : 'queuedir';
	my $env     = $opt{env} || {};

	my $dir = tempdir('mailfront-XXXXXX', TMPDIR => 1, CLEANUP => 1);
	my $queue = "$dir/queue";
	for my $d ($queue, "$queue/tmp", "$queue/new") {
		mkdir $d or croak "mkdir $d: $!";
	}

	my $self = bless {
		dir         => $dir,
		queue       => $queue,
		log_file    => "$dir/mailfront.log",
		host        => '127.0.0.1',
		plugins     => [@$plugins],
		backend     => $backend,
		env         => {%$env},
		concurrency => $opt{concurrency},
		wrapper     => $opt{wrapper} || [],   # a program between tcpserver and mailfront (tlswrapper ...)
		lifetime    => defined $opt{lifetime} ? $opt{lifetime} : $DEFAULT_LIFETIME,
		tcpserver   => tcpserver_path(),
		mailfront   => mailfront_path(),
		creator     => $$,
	}, $class;

	# The port is picked by binding :0 and releasing it, so another
	# process could grab it in between; tcpserver then fails to bind and
	# exits, which we notice, so just try again with a new port.
	my $last_err = '';
	for my $attempt (1 .. 5) {
		my $port = _free_port();
		my $pid = $self->_spawn($port);
		my $err = $self->_wait_ready($pid, $port, 10);
		if (!defined $err) {
			$self->{pid}  = $pid;
			$self->{port} = $port;
			return $self;
		}
		$last_err = $err;
		_terminate($pid);
	}
	croak "Test::Mailfront: could not start tcpserver/mailfront: $last_err\n"
		. "log:\n" . $self->log;
}

sub _free_port {
	my $s = IO::Socket::INET->new(
		LocalAddr => '127.0.0.1',
		LocalPort => 0,
		Proto     => 'tcp',
		Listen    => 1,
	) or croak "Test::Mailfront: cannot bind 127.0.0.1:0: $@";
	my $port = $s->sockport;
	close $s;
	return $port;
}

# undef when the server accepts connections, else a reason.
sub _wait_ready {
	my ($self, $pid, $port, $timeout) = @_;
	my $deadline = Time::HiRes::time() + $timeout;
	while (Time::HiRes::time() < $deadline) {
		local ($?, $!);
		if (waitpid($pid, POSIX::WNOHANG()) == $pid) {
			delete $RUNNING{$pid};
			return "tcpserver exited (status $?)";
		}
		my $s = IO::Socket::INET->new(
			PeerAddr => '127.0.0.1',
			PeerPort => $port,
			Proto    => 'tcp',
			Timeout  => 1,
		);
		if ($s) {
			# mailfront just sees EOF on this probe connection.
			close $s;
			# Make sure it was our tcpserver that answered.
			Time::HiRes::sleep(0.02);
			if (waitpid($pid, POSIX::WNOHANG()) == $pid) {
				delete $RUNNING{$pid};
				return "tcpserver exited (status $?)";
			}
			return undef;
		}
		Time::HiRes::sleep(0.05);
	}
	return "no connection to 127.0.0.1:$port after $timeout s";
}

sub _spawn {
	my ($self, $port) = @_;
	my @cmd = ($self->{tcpserver});
	push @cmd, '-c', $self->{concurrency} if $self->{concurrency};
	push @cmd, '-R', '-H', '-l0', '127.0.0.1', $port, @{ $self->{wrapper} },
		$self->{mailfront}, 'qmtp', $self->{backend}, @{ $self->{plugins} };

	my $ppid = $$;
	my $pid = fork;
	croak "Test::Mailfront: fork failed: $!" unless defined $pid;
	if ($pid == 0) {
		eval { $self->_watchdog($ppid, \@cmd); 1 }
			or warn "Test::Mailfront watchdog: $@";
		POSIX::_exit(1);
	}
	$RUNNING{$pid} = $$;
	return $pid;
}

# Close every descriptor inherited from the test: client sockets created
# by C code may lack close-on-exec, and a copy kept by tcpserver would
# stop a peer from ever seeing EOF.  Also, prove waits for EOF on the
# test's stdout, so nothing long-lived may hold it.
sub _close_inherited_fds {
	my @fds;
	if (opendir my $dh, '/proc/self/fd') {
		@fds = grep { /^\d+\z/ } readdir $dh;
		closedir $dh;
	} else {
		@fds = (3 .. 255);
	}
	POSIX::close($_) for grep { $_ > 2 } @fds;
}

# Make this process a "child subreaper" (Linux >= 3.4) so that mailfront
# processes orphaned by tcpserver's death are re-parented to us and can be
# reaped here instead of lingering as zombies under a non-reaping pid 1.
sub _become_subreaper {
	return unless $^O eq 'linux';
	my $nr = eval { require 'syscall.ph'; &SYS_prctl() };
	if (!$nr) {
		my %by_arch = (x86_64 => 157, aarch64 => 167, i386 => 172, i486 => 172,
			i586 => 172, i686 => 172);
		my ($arch) = $Config{archname} =~ /^([^-]+)/;
		$nr = $by_arch{$arch} or return;
	}
	syscall($nr, 36, 1, 0, 0, 0);    # PR_SET_CHILD_SUBREAPER = 36
}

sub _watchdog {
	my ($self, $ppid, $cmd) = @_;

	POSIX::setsid();
	my $stop = 0;
	$SIG{$_} = 'DEFAULT' for qw(INT HUP QUIT CHLD PIPE ALRM);
	$SIG{__DIE__} = 'DEFAULT';
	$SIG{TERM} = sub { $stop = 1 };
	$0 = "Test::Mailfront watchdog @$cmd";

	open STDIN, '<', '/dev/null';
	open STDOUT, '>', '/dev/null';
	open STDERR, '>>', $self->{log_file};
	_close_inherited_fds();
	_become_subreaper();

	my $tpid = fork;
	POSIX::_exit(1) unless defined $tpid;
	if ($tpid == 0) {
		setpgrp(0, 0);
		$SIG{$_} = 'DEFAULT' for qw(TERM PIPE);
		$ENV{$_} = $self->{env}{$_} for keys %{ $self->{env} };
		$ENV{QUEUEDIR} = $self->{queue};
		$ENV{QUEUEDIR_NOSYNC} = 1;
		exec { $cmd->[0] } @$cmd
			or print STDERR "Test::Mailfront: exec $cmd->[0] failed: $!\n";
		POSIX::_exit(127);
	}
	setpgrp($tpid, $tpid);    # also here, to win the race with exec
	_spit("$self->{dir}/tcpserver.pid", $tpid);

	my $end = time + $self->{lifetime};
	my $status = 0;
	while (1) {
		# Reap tcpserver and, as subreaper, orphaned mailfronts.
		my $tcpserver_gone = 0;
		while ((my $r = waitpid(-1, POSIX::WNOHANG())) > 0) {
			if ($r == $tpid) {
				$tcpserver_gone = 1;
				$status = $? >> 8 || 1;
			}
		}
		last if $tcpserver_gone || $stop || getppid() != $ppid || time > $end;
		Time::HiRes::sleep(0.05);
	}

	# Shut down group T (tcpserver and every mailfront), then reap.
	kill 'TERM', -$tpid;
	my $deadline = Time::HiRes::time() + 3;
	my $killed = 0;
	while (1) {
		my $r = waitpid(-1, POSIX::WNOHANG());
		last if $r == -1;    # no children left
		next if $r > 0;
		if (!$killed && Time::HiRes::time() > $deadline) {
			kill 'KILL', -$tpid;
			$killed = 1;
			$deadline = Time::HiRes::time() + 2;
		} elsif ($killed && Time::HiRes::time() > $deadline) {
			last;
		}
		Time::HiRes::sleep(0.02);
	}
	POSIX::_exit($stop ? 0 : $status);
}

sub _spit {
	my ($file, $data) = @_;
	if (open my $fh, '>', $file) {
		binmode $fh;
		print $fh $data;
		close $fh;
	}
}

sub _slurp {
	my ($file) = @_;
	open my $fh, '<', $file or return undef;
	binmode $fh;
	local $/;
	my $data = <$fh>;
	close $fh;
	return defined $data ? $data : '';
}

# Ask the watchdog to stop (it kills and reaps tcpserver and mailfront);
# if it does not exit in time, kill both process groups outright.
sub _terminate {
	my ($pid, $dir) = @_;
	local ($?, $!);
	delete $RUNNING{$pid};
	kill 'TERM', $pid;
	my $deadline = Time::HiRes::time() + 8;
	while (Time::HiRes::time() < $deadline) {
		my $r = waitpid($pid, POSIX::WNOHANG());
		return if $r == $pid || $r == -1;
		Time::HiRes::sleep(0.02);
	}
	if (defined $dir) {
		my $tpid = _slurp("$dir/tcpserver.pid");
		# Only if that pid is still our tcpserver: pids are reused quickly,
		# and a stale one could name someone else's process group.
		if (defined $tpid && $tpid =~ /^(\d+)$/ && $1 > 1) {
			my $cmd = _slurp("/proc/$1/cmdline");
			kill 'KILL', -$1 if defined $cmd && $cmd =~ /tcpserver/;
		}
	}
	kill 'KILL', -$pid;
	waitpid($pid, 0);
}

sub stop {
	my ($self) = @_;
	return unless $self->{pid} && $self->{creator} == $$;
	my $pid = delete $self->{pid};
	_terminate($pid, $self->{dir}) if exists $RUNNING{$pid};
	return 1;
}

sub DESTROY {
	my ($self) = @_;
	$self->stop if $self->{creator} && $self->{creator} == $$;
}

END {
	for my $pid (keys %RUNNING) {
		_terminate($pid) if $RUNNING{$pid} == $$;
	}
}

# ---------------------------------------------------------------------
# Accessors and queue inspection
# ---------------------------------------------------------------------

sub port      { $_[0]{port} }
sub host      { $_[0]{host} }
sub pid       { $_[0]{pid} }
sub dir       { $_[0]{dir} }
sub queue_dir { $_[0]{queue} }
sub log_file  { $_[0]{log_file} }

sub log {
	my ($self) = @_;
	my $data = _slurp($self->{log_file});
	return defined $data ? $data : '';
}

# mailfront names queue files "<epoch>.<usec>.<pid>"; it writes them in
# tmp/ and renames into new/, so everything in new/ is complete.
sub _queue_files {
	my ($self) = @_;
	my $new = "$self->{queue}/new";
	opendir my $dh, $new or return ();
	my @names = grep { !/^\./ && -f "$new/$_" } readdir $dh;
	closedir $dh;
	my %key;
	for my $n (@names) {
		my @f = split /\./, $n;
		$key{$n} = [ map { defined $f[$_] && $f[$_] =~ /^\d+\z/ ? $f[$_] : 0 } 0 .. 2 ];
	}
	return map { "$new/$_" } sort {
		$key{$a}[0] <=> $key{$b}[0]
			|| $key{$a}[1] <=> $key{$b}[1]
			|| $key{$a}[2] <=> $key{$b}[2]
			|| $a cmp $b
	} @names;
}

# The queuedir format is "SENDER\0" "RCPT\0"... then the message, with no
# marker where the recipients end.  We take as recipients the NUL-ended
# fields that look like addresses (non-empty, no CR/LF); a message with
# NUL bytes in its first line could be misparsed -- use {raw} then.
sub _parse_queue_file {
	my ($data) = @_;
	my $pos = index($data, "\0");
	return { sender => undef, recipients => [], message => $data, raw => $data }
		if $pos < 0;
	my $sender = substr($data, 0, $pos);
	$pos++;
	my @rcpts;
	while (1) {
		my $nul = index($data, "\0", $pos);
		last if $nul < 0;
		my $field = substr($data, $pos, $nul - $pos);
		last if $field eq '' || $field =~ /[\r\n]/;
		push @rcpts, $field;
		$pos = $nul + 1;
	}
	return {
		sender     => $sender,
		recipients => \@rcpts,
		message    => substr($data, $pos),
		raw        => $data,
	};
}

sub queued {
	my ($self) = @_;
	my @out;
	for my $file ($self->_queue_files) {
		my $data = _slurp($file);
		next unless defined $data;
		my $q = _parse_queue_file($data);
		$q->{file} = $file;
		push @out, $q;
	}
	return @out;
}

sub wait_queued {
	my ($self, $count, $timeout) = @_;
	$count   = 1  unless defined $count;
	$timeout = 10 unless defined $timeout;
	my $deadline = Time::HiRes::time() + $timeout;
	while (1) {
		return 1 if $self->_queue_files >= $count;
		return 0 if Time::HiRes::time() >= $deadline;
		Time::HiRes::sleep(0.02);
	}
}

sub clear {
	my ($self) = @_;
	my $n = 0;
	$n += unlink $_ for $self->_queue_files;
	return $n;
}

1;

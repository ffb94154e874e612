package Net::QMTP::Maildir;

# Flushes a maildir of messages that carry their own envelope
# (serialmail's maildirqmtp) to a QMTP server.  POD at the end.

use strict;
use warnings;

use Carp qw(croak);
use Errno ();
use Fcntl qw(:flock O_RDONLY O_RDWR O_WRONLY O_CREAT O_EXCL O_NONBLOCK O_NOFOLLOW);
use POSIX ();
use Net::QMTP;

our $VERSION = '1.00';

use constant {
	ALL_ACCEPTED => 0,
	PERMANENT    => 100,
	TEMPORARY    => 111,
};
use constant SORT_KEY => 12;    # digits of the delivery time that sorts a name

my $BLOCK = 65536;    # read size; the envelope must lie within the first block

# Outcome => [exit status it implies, removed?]
my %OUTCOME = (
	accepted          => [ALL_ACCEPTED, 1],
	bounced           => [PERMANENT,    1],
	dropped           => [PERMANENT,    1],
	skipped           => [ALL_ACCEPTED, 0],
	malformed         => [PERMANENT,    0],
	deferred          => [TEMPORARY,    0],
	not_sent          => [TEMPORARY,    0],
	changed           => [TEMPORARY,    0],
	bounce_failed     => [TEMPORARY,    0],
	not_removed       => [TEMPORARY,    0],
);

sub new {
	my ($class, %arg) = @_;
	my %known = map { $_ => 1 } qw(dir prefix server port timeout connect_timeout answers
		debug max_age chunk_messages chunk_bytes memory_limit bounce_host on_message lock tls);
	for (keys %arg) { croak "Net::QMTP::Maildir: unknown option '$_'" unless $known{$_} }
	for (qw(dir prefix server)) {
		croak "Net::QMTP::Maildir: '$_' is required" unless defined $arg{$_};
	}
	croak "Net::QMTP::Maildir: 'dir' must not be empty" unless length $arg{dir};
	my $self = bless {
		port            => 209,
		timeout         => 120,
		answers         => 'auto',
		max_age         => 14 * 24 * 3600,
		chunk_messages  => 100,
		chunk_bytes     => 64 * 1024 * 1024,
		memory_limit    => 8 * 1024 * 1024,
		lock            => 1,
		%arg,
	}, $class;
	$self->{max_age} = 14 * 24 * 3600 unless defined $self->{max_age};
	croak "Net::QMTP::Maildir: 'max_age' must be a non-negative number of seconds"
		unless $self->{max_age} =~ /\A(?:\d+\.?\d*|\.\d+)\z/;
	for (qw(chunk_messages chunk_bytes memory_limit)) {
		croak "Net::QMTP::Maildir: '$_' must be a non-negative integer"
			unless $self->{$_} =~ /\A\d+\z/;
	}
	croak "Net::QMTP::Maildir: 'chunk_messages' must be at least 1" unless $self->{chunk_messages} >= 1;
	croak "Net::QMTP::Maildir: 'on_message' must be a code reference"
		if defined $self->{on_message} && ref $self->{on_message} ne 'CODE';
	croak "Net::QMTP::Maildir: 'tls' must be a hash of Net::QMTP's SSL options"
		if defined $self->{tls} && ref $self->{tls} ne 'HASH';
	$self->{dir} =~ s{(?<=.)/+\z}{};
	$self->{bounce_host} = _default_bounce_host() unless defined $self->{bounce_host};
	return $self;
}

sub _default_bounce_host {
	for my $f ('/var/qmail/control/bouncehost', '/var/qmail/control/me') {
		if (open my $fh, '<', $f) {
			my $l = <$fh>;
			if (defined $l) { $l =~ s/\s+\z//; return $l if length $l }
		}
	}
	require Sys::Hostname;
	my $h = eval { Sys::Hostname::hostname() };
	return defined $h && length $h ? $h : 'localhost';
}

# ---------------------------------------------------------------------
# flush
# ---------------------------------------------------------------------

sub flush {
	my ($self) = @_;
	my %c = (status => ALL_ACCEPTED, error => undef, map { $_ => 0 } keys %OUTCOME);
	$self->{counts} = \%c;
	my $dir = $self->{dir};

	for my $sub (qw(new cur tmp)) {
		next if -d "$dir/$sub";
		return $self->_fatal(PERMANENT, "$dir is not a maildir (no $sub/ directory)");
	}

	my $lock;
	if ($self->{lock}) {
		my $lf = "$dir/.qmtp-send.lock";
		if (!sysopen $lock, $lf, O_RDWR | O_CREAT, 0600) {
			my $e = $!;
			return $self->_fatal(_is_permission($e) ? PERMANENT : TEMPORARY,
				"cannot open the lock file $lf: $e");
		}
		if (!flock $lock, LOCK_EX | LOCK_NB) {
			my $e = $!;
			return $self->_fatal(TEMPORARY, "$dir is being flushed by another process (lock $lf held); nothing done")
				if $!{EWOULDBLOCK} || $!{EAGAIN};
			return $self->_fatal(TEMPORARY, "cannot lock $lf: $e");
		}
	}

	$self->_clean_tmp;

	# Maildir names start with the delivery time: oldest first. Each name
	# is kept behind its time, zero-padded, as one string sorted in place:
	# about 140 bytes a message (a pair of them in an array each took 480).
	my @files;
	for my $sub (qw(new cur)) {
		opendir my $dh, "$dir/$sub"
			or return $self->_fatal(TEMPORARY, "cannot read $dir/$sub: $!");
		while (defined(my $n = readdir $dh)) {
			next if $n =~ /\A\./;
			push @files, sprintf('%0*d', SORT_KEY, _name_time("$sub/$n")) . "$sub/$n";
		}
		closedir $dh;
	}
	@files = sort @files;

	$self->{now} = time;
	$self->{spool_n} = 0;
	# Each message is read when the stream takes it: only a window of them
	# is in memory (or spooled) at a time.
	my $read_next = sub {
		while (@files) {
			my $m = $self->_read_message(substr(shift @files, SORT_KEY));
			return $m if $m;
		}
		return undef;
	};
	if (my $first = $read_next->()) {
		$self->_stream($first, $read_next, \@files);
	}
	delete $self->{qmtp};
	close $lock if $lock;
	return \%c;
}

# Copies left in tmp/ by a run that was killed: removed after 36 hours,
# the age at which maildir readers clean tmp/ too.
sub _clean_tmp {
	my ($self) = @_;
	my $tmp = "$self->{dir}/tmp";
	opendir my $dh, $tmp or return;
	for my $n (grep { /\A\d+\.P\d+Q\d+\.qmtp-send(?:\.bounce)?\z/ } readdir $dh) {
		my @st = lstat "$tmp/$n" or next;
		unlink "$tmp/$n" if -f _ && $st[9] < time - 36 * 3600;
	}
	closedir $dh;
}

sub _is_permission { my ($e) = @_; local $! = $e; return $!{EACCES} || $!{EPERM} || $!{EROFS} }

sub _fatal {
	my ($self, $status, $why) = @_;
	my $c = $self->{counts};
	$c->{status} = $status if $status > $c->{status};
	$c->{error} = defined $c->{error} ? "$c->{error}; $why" : $why;
	return $c;
}

sub _name_time {
	my ($name) = @_;
	# A maildir name starts with its delivery time: only a plausible one
	# (after 2000) counts, never a name such as "5.eml".
	return $name =~ m{\A(?:new|cur)/(\d{9,10})\.} && $1 >= 946684800 ? $1 : 0;
}

# Report one message's outcome; updates counts and status.
sub _outcome {
	my ($self, $m, $outcome, $text) = @_;
	my $c = $self->{counts};
	$c->{$outcome}++;
	my $st = $OUTCOME{$outcome}[0];
	$c->{status} = $st if $st > $c->{status};
	$self->_unspool($m);
	return unless $self->{on_message};
	$self->{on_message}->({
		file      => $m->{name},
		path      => "$self->{dir}/$m->{name}",
		sender    => $m->{sender},
		recipient => $m->{recipient},
		outcome   => $outcome,
		text      => $text,
		removed   => $OUTCOME{$outcome}[1],
	});
}

sub _unspool {
	my ($self, $m) = @_;
	for (qw(spool bounce_spool)) {
		unlink delete $m->{$_} if defined $m->{$_};
	}
}

# Reads one message file once.  Returns a message to send, or nothing
# (after reporting it) when it is not to be sent.
sub _read_message {
	my ($self, $name) = @_;
	my $path = "$self->{dir}/$name";
	my $m = { name => $name, path => $path };
	my $fh;
	# Only a regular file of its own: a symlink would be read through and
	# then never match at removal (sent again every run), a FIFO would
	# wait for a writer with the lock held.
	my @link = lstat $path or return;    # removed meanwhile (by a reader of the maildir)
	if (!-f _) {
		return if -d _;
		$self->_outcome($m, 'malformed', 'not a regular file (a symlink, FIFO or device); left alone');
		return;
	}
	if (!sysopen $fh, $path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW) {
		return if $!{ENOENT};
		$self->_outcome($m, 'not_sent', "cannot open: $!; kept");
		return;
	}
	binmode $fh;
	my @st = stat $fh;
	return unless -f _ && $st[0] == $link[0] && $st[1] == $link[1];    # replaced meanwhile
	$m->{stat} = [ @st[0, 1, 7, 9] ];    # dev ino size mtime
	my $mtime = $st[9];
	my $nt = _name_time($name);
	my $t = $nt && $nt <= $self->{now} + 3600 && $nt < $mtime ? $nt : $mtime;
	$m->{age} = $self->{now} - $t;

	my $head = '';
	my $r = sysread $fh, $head, $BLOCK;
	if (!defined $r) {
		$self->_outcome($m, 'not_sent', "cannot read: $!; kept");
		return;
	}
	if ($head !~ /\AReturn-Path:[ \t]*<([^\n]*)>[ \t]*\n/i) {
		$self->_outcome($m, 'malformed', 'no "Return-Path: <sender>" line at the top; left alone');
		return;
	}
	my $sender = $1;
	my $l1 = $+[0];
	if (substr($head, $l1) !~ /\ADelivered-To:[ \t]*([^\n]*?)[ \t]*\n/i) {
		$self->_outcome($m, 'malformed', 'no "Delivered-To: recipient" line after Return-Path; left alone');
		return;
	}
	my $rcpt = $1;
	my $envlen = $l1 + $+[0];
	if ("$sender$rcpt" =~ /[\x00-\x1f\x7f]/) {
		$self->_outcome($m, 'malformed', 'control characters (or CR LF line ends) in the envelope lines; left alone');
		return;
	}
	$m->{sender} = $sender;
	$m->{recipient} = $rcpt;
	my $prefix = $self->{prefix};
	if (substr($rcpt, 0, length $prefix) ne $prefix) {
		$self->_outcome($m, 'skipped', "recipient does not start with '$prefix'; left alone");
		return;
	}
	my $to = substr($rcpt, length $prefix);
	if ($to eq '' || $to =~ /\s/) {
		$self->_outcome($m, 'malformed', "recipient '$rcpt' is empty or has white space after the prefix; left alone");
		return;
	}
	$m->{to} = $to;

	my $size = $st[7];
	if ($size - $envlen <= $self->{memory_limit}) {
		my $body = substr($head, $envlen);
		while (1) {
			my $n = sysread $fh, $body, $BLOCK, length $body;
			if (!defined $n) { $self->_outcome($m, 'not_sent', "cannot read: $!; kept"); return }
			last if $n == 0;
			if (length($body) + $envlen > $size) {
				$self->_outcome($m, 'changed', 'the file grew while it was being read; kept for the next run');
				return;
			}
		}
		$m->{body} = \$body;
		return $self->_check_read($fh, $m, $envlen + length $body) ? $m : undef;
	}

	# Too big for memory: copy it, without the envelope lines, into the
	# maildir's tmp/ (same file system) and let Net::QMTP stream the copy.
	my $spool = sprintf '%s/tmp/%d.P%dQ%d.qmtp-send', $self->{dir}, $self->{now}, $$, ++$self->{spool_n};
	my $out;
	if (!sysopen $out, $spool, O_WRONLY | O_CREAT | O_EXCL, 0600) {
		$self->_outcome($m, 'not_sent', "cannot create $spool: $!; kept");
		return;
	}
	$m->{spool} = $spool;
	binmode $out;
	my $total = length $head;
	my $buf = substr($head, $envlen);
	while (1) {
		if (length $buf) {
			my $ok = print {$out} $buf;
			if (!$ok) { close $out; $self->_outcome($m, 'not_sent', "cannot write $spool: $!; kept"); return }
		}
		$buf = '';
		my $n = sysread $fh, $buf, $BLOCK;
		if (!defined $n) { close $out; $self->_outcome($m, 'not_sent', "cannot read: $!; kept"); return }
		last if $n == 0;
		$total += $n;
		if ($total > $size) {
			close $out;
			$self->_outcome($m, 'changed', 'the file grew while it was being read; kept for the next run');
			return;
		}
	}
	if (!close $out) { $self->_outcome($m, 'not_sent', "cannot write $spool: $!; kept"); return }
	return $self->_check_read($fh, $m, $total) ? $m : undef;
}

# The bytes read must be the whole file as it was when opened, and the
# file must not have been changed meanwhile.
sub _check_read {
	my ($self, $fh, $m, $total) = @_;
	my @st = stat $fh;
	my ($size, $mtime) = @{ $m->{stat} }[2, 3];
	if ($total != $size || $st[7] != $size || $st[9] != $mtime) {
		$self->_outcome($m, 'changed', 'the file changed while it was being read; kept for the next run');
		return 0;
	}
	return 1;
}

sub _unchanged {
	my ($self, $m) = @_;
	my @st = lstat $m->{path};
	return 0 unless @st;
	my $s = $m->{stat};
	return $st[0] == $s->[0] && $st[1] == $s->[1] && $st[7] == $s->[2] && $st[9] == $s->[3];
}

# Removes a message that was dealt with, unless it changed since it was read.
sub _remove {
	my ($self, $m, $outcome, $text) = @_;
	if (!$self->_unchanged($m)) {
		return $self->_outcome($m, 'changed',
			"$text; but the file changed after it was read, so it is kept (it may be delivered twice)");
	}
	if (!unlink $m->{path}) {
		return $self->_outcome($m, 'not_removed', "$text; but it could not be removed: $!") unless $!{ENOENT};
	}
	return $self->_outcome($m, $outcome, "$text; removed");
}

sub _connect {
	my ($self) = @_;
	return $self->{qmtp} if $self->{qmtp};
	my $why;
	my $q = eval {
		my $o = Net::QMTP->new($self->{server},
			Port    => $self->{port},
			Timeout => $self->{timeout},
			Answers => $self->{answers},
			(defined $self->{connect_timeout} ? (ConnectTimeout => $self->{connect_timeout}) : ()),
			($self->{debug} ? (Debug => 1) : ()),
			($self->{tls} ? %{ $self->{tls} } : ()));
		$why = $@ unless $o;
		$o;
	};
	die $@ if !$q && !defined $why;    # an option value Net::QMTP refused
	if (!$q) {
		$why =~ s/ at \S+ line \d+\.?\n?\z//;
		$why =~ s/\s+\z//;
		$self->{connect_error} = $why;
		return undef;
	}
	return $self->{qmtp} = $q;
}

sub _job {
	my ($m, $sender, $rcpt, $what) = @_;
	my %j = (sender => $sender, recipients => [$rcpt], encoding => 'unix');
	if (defined $what->{file}) { $j{file} = $what->{file} } else { $j{message} = ${ $what->{body} } }
	return \%j;
}

# Sends every message, from $first on, as one send_stream over one
# connection: accepted ones are removed as their answers come, and
# bounces go out between windows, a chunk at a time.
sub _stream {
	my ($self, $first, $read_next, $left) = @_;
	my $q = eval { $self->_connect };
	if (!$q && $@) { my $e = $@; $self->_unspool($first); die $e }
	if (!$q) {
		$self->_outcome($first, 'not_sent', "not sent: $self->{connect_error}; kept");
		$self->_fatal(TEMPORARY, "$self->{connect_error}; every message is kept for the next run");
		return;
	}
	my (@taken, @bounce);
	my $bounce_bytes = 0;
	my $next = sub {
		my $m = $first || $read_next->();
		$first = undef;
		return undef unless $m;
		push @taken, $m;
		return _job($m, $m->{sender}, $m->{to}, { body => $m->{body}, file => $m->{spool} });
	};
	$q->send_stream(jobs => $next, window => $self->{chunk_messages}, window_bytes => $self->{chunk_bytes} || 1,
		on_result => sub {
			my ($r) = @_;
			my $m = shift @taken;
			$self->_result($m, $r) or return;
			push @bounce, $m;
			$bounce_bytes += length ${ $m->{body} } if $m->{body};
			if (@bounce >= $self->{chunk_messages} || $bounce_bytes >= $self->{chunk_bytes}) {
				$self->_bounce([ splice @bounce ]);
				$bounce_bytes = 0;
			}
		});
	$self->_bounce(\@bounce) if @bounce;
	# The stream stops after a timeout, or when the server stopped serving:
	# the messages it did not take stay for the next run.
	if (@$left) {
		my $why = $q->error;
		$why = 'the connection could not be used' unless defined $why;
		$why =~ s/\A(?:not sent: )+//;
		delete $self->{qmtp};
		$self->_fatal(TEMPORARY, "$why; the remaining messages are kept for the next run");
	}
}

# What one message's result means for it; true when it is to be bounced.
sub _result {
	my ($self, $m, $r) = @_;
	if (!$r->{result}) {
		my $e = defined $r->{error} ? $r->{error} : 'not sent';
		$e = "not sent: $e" unless $e =~ /\Anot sent/;
		$self->_outcome($m, 'not_sent', "$e; kept");
		return 0;
	}
	my $ans = $r->{result}{ $m->{to} };
	$ans = 'deferral: no response' unless defined $ans;
	my ($resp) = grep { $_->{recipient} eq $m->{to} } @{ $r->{responses} || [] };
	my $received = $resp ? $resp->{received} : 0;
	if ($ans =~ /\Asuccess: /) {
		$self->_remove($m, 'accepted', $ans);
	} elsif ($ans =~ /\Afailure: (.*)\z/s) {
		$m->{why} = $1;
		return 1;
	} elsif ($received && $m->{age} >= $self->{max_age}) {
		($m->{why} = $ans) =~ s/\Adeferral: //;
		$m->{aged} = 1;
		return 1;
	} else {
		$self->_outcome($m, 'deferred', "$ans; kept");
	}
	return 0;
}

sub _server_name {
	my ($self) = @_;
	my $s = $self->{server};
	return ref $s ? join(', ', @$s) : $s;
}

sub _date {
	my @t = localtime;
	my $off = (POSIX::mktime(@t) - POSIX::mktime(gmtime)) / 60;    # minutes
	my $tz = sprintf '%s%02d%02d', $off < 0 ? '-' : '+', abs($off) / 60, abs($off) % 60;
	my @day = qw(Sun Mon Tue Wed Thu Fri Sat);
	my @mon = qw(Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec);
	return sprintf '%s, %d %s %d %02d:%02d:%02d %s', $day[$t[6]], $t[3], $mon[$t[4]], $t[5] + 1900,
		@t[2, 1, 0], $tz;
}

# The text of a bounce, in qmail-send's format (QSBMF), up to the copy.
sub _bounce_head {
	my ($self, $m) = @_;
	my $host = $self->{bounce_host};
	my $why = $m->{why};
	$why =~ s/[\x00-\x08\x0b-\x1f\x7f]/?/g;
	$why =~ s/\n+\z//;
	$why = "The QMTP server " . $self->_server_name . " said: $why\n";
	$why .= "I'm not going to try again; this message has been in the queue too long.\n" if $m->{aged};
	return "Date: " . _date() . "\n"
		. "From: MAILER-DAEMON\@$host\n"
		. "To: $m->{sender}\n"
		. "Subject: failure notice\n"
		. "\n"
		. "Hi. This is the qmtp-send program at $host.\n"
		. "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
		. "This is a permanent error; I've given up. Sorry it didn't work out.\n"
		. "\n"
		. "<$m->{to}>:\n"
		. $why
		. "\n"
		. "--- Below this line is a copy of the message.\n"
		. "\n"
		. "Return-Path: <$m->{sender}>\n";
}

sub _bounce {
	my ($self, $list) = @_;
	my (@send, @jobs);
	for my $m (@$list) {
		my $what = $m->{aged} ? "deferral: $m->{why}; older than the limit" : "failure: $m->{why}";
		if ($m->{sender} eq '' || $m->{sender} eq '#@[]') {
			$self->_remove($m, 'dropped', "$what; null sender, so no bounce");
			next;
		}
		my $head = $self->_bounce_head($m);
		my %w;
		if ($m->{body}) {
			$w{body} = \($head . ${ $m->{body} });
		} else {
			my $bs = "$m->{spool}.bounce";
			my ($in, $out);
			my $ok = open($in, '<', $m->{spool}) && sysopen($out, $bs, O_WRONLY | O_CREAT | O_EXCL, 0600);
			if ($ok) {
				$m->{bounce_spool} = $bs;
				binmode $_ for $in, $out;
				$ok = print {$out} $head;
				while ($ok) {
					my $buf;
					my $n = read $in, $buf, $BLOCK;
					if (!defined $n) { $ok = 0; last }
					last if $n == 0;
					$ok = print {$out} $buf;
				}
				$ok = close($out) && $ok;
			}
			if (!$ok) {
				$self->_outcome($m, 'bounce_failed', "$what; cannot write the bounce: $!; kept");
				next;
			}
			$w{file} = $bs;
		}
		$m->{what} = $what;
		push @send, $m;
		push @jobs, _job($m, '', $m->{sender}, \%w);
	}
	return unless @send;
	my $q = eval { $self->_connect };    # options were checked by the first connect
	my $res = $q ? $q->send_many(@jobs) : undef;
	if (!$res) {
		my $why = $q ? $q->error : $self->{connect_error};
		delete $self->{qmtp};
		$self->_outcome($_, 'bounce_failed', "$_->{what}; the bounce was not sent: $why; kept") for @send;
		return;
	}
	for my $i (0 .. $#send) {
		my $m = $send[$i];
		my $r = $res->[$i];
		my $ans = $r->{result} ? $r->{result}{ $m->{sender} } : undef;
		if (defined $ans && $ans =~ /\Asuccess: /) {
			$self->_remove($m, 'bounced', "$m->{what}; bounced to $m->{sender}");
		} else {
			$ans = defined $ans ? $ans : 'not sent: ' . (defined $r->{error} ? $r->{error} : 'no answer');
			$self->_outcome($m, 'bounce_failed', "$m->{what}; the bounce to $m->{sender} got $ans; kept");
		}
	}
}

# ---------------------------------------------------------------------
# qmtp-send --maildir
# ---------------------------------------------------------------------

sub run_cli {
	my ($opt, @args) = @_;
	$opt ||= {};
	my $err = sub { print STDERR "qmtp-send: $_[0]\n"; return PERMANENT };
	return $err->('--maildir takes two arguments: DIR PREFIX (PREFIX may be empty: "")')
		unless @args == 2;
	my ($dir, $prefix) = @args;
	return $err->('--maildir needs --server') unless defined $opt->{server} && length $opt->{server};
	my $max_age = $opt->{'max-age'};
	return $err->('--max-age must be a number of seconds')
		if defined $max_age && $max_age !~ /\A(?:\d+\.?\d*|\.\d+)\z/;
	my ($verbose, $quiet) = ($opt->{verbose}, $opt->{quiet});
	local $SIG{PIPE} = 'IGNORE';    # a closed stdout is a write error, not a signal
	require IO::Handle;
	my $out_ok = 1;

	my $on = sub {
		my ($o) = @_;
		my $line = join("\t", $o->{path}, defined $o->{recipient} ? $o->{recipient} : '-', $o->{text}) . "\n";
		$line =~ s/[\x00-\x08\x0b-\x1f\x7f]/?/g;
		$line =~ s/\n(?!\z)/ /g;
		my $problem = $o->{outcome} !~ /\A(?:accepted|skipped)\z/;
		return if $quiet;
		if ($problem) {
			print STDERR $line;
		} elsif ($verbose) {
			print STDOUT $line or $out_ok = 0;
		}
	};

	my $flusher = eval {
		__PACKAGE__->new(
			dir => $dir, prefix => $prefix, server => $opt->{server},
			(defined $opt->{port} ? (port => $opt->{port}) : ()),
			(defined $opt->{timeout} ? (timeout => $opt->{timeout}) : ()),
			(defined $opt->{'connect-timeout'} ? (connect_timeout => $opt->{'connect-timeout'}) : ()),
			(defined $opt->{answers} ? (answers => $opt->{answers}) : ()),
			($opt->{'tls-options'} ? (tls => $opt->{'tls-options'}) : ()),
			debug => $opt->{debug}, max_age => $max_age, on_message => $on,
		);
	};
	if (!$flusher) {
		(my $why = $@) =~ s/ at \S+ line \d+\.?\n?\z//;
		return $err->($why);
	}
	my $c = eval { $flusher->flush };
	if (!$c) {
		# Net::QMTP refused an option value (a bad port, ...): configuration.
		(my $why = $@) =~ s/ at \S+ line \d+\.?\n?\z//;
		$why =~ s/\ANet::QMTP->new: //;
		return $err->($why);
	}
	if (defined $c->{error}) {
		print STDERR "qmtp-send: $c->{error}\n"
			unless $quiet && $c->{status} != PERMANENT;
	}
	if ($verbose && !$quiet) {
		my @parts = map { "$c->{$_} $_" } grep { $c->{$_} } qw(accepted bounced dropped deferred not_sent
			changed bounce_failed not_removed malformed skipped);
		print STDOUT "$dir: ", (@parts ? join(', ', @parts) : 'nothing to send'), "\n" or $out_ok = 0;
	}
	$out_ok = 0 if $verbose && !$quiet && !STDOUT->flush;
	if (!$out_ok) {
		print STDERR "qmtp-send: cannot write the report to standard output: $!\n";
		return TEMPORARY if $c->{status} < TEMPORARY;
	}
	return $c->{status};
}

1;

__END__

=head1 NAME

Net::QMTP::Maildir - flush a maildir queue over QMTP, as serialmail's maildirqmtp

=head1 SYNOPSIS

From the shell (cron):

 qmtp-send --maildir --server hub.example.net /var/spool/ppp/Maildir ppp-

From Perl:

 use Net::QMTP::Maildir;

 my $flusher = Net::QMTP::Maildir->new(
     dir    => '/var/spool/ppp/Maildir',
     prefix => 'ppp-',
     server => 'hub.example.net',
     on_message => sub {
         my ($o) = @_;
         warn "$o->{path}\t$o->{recipient}\t$o->{text}\n"
             unless $o->{outcome} eq 'accepted' || $o->{outcome} eq 'skipped';
     },
 );
 my $c = $flusher->flush;
 warn "$c->{error}\n" if defined $c->{error};
 print "$c->{accepted} accepted, $c->{deferred} deferred\n";
 exit $c->{status};    # 0, 100 or 111

=head1 DESCRIPTION

This is the job of serialmail's C<maildirqmtp DIR PREFIX HOST>: a qmail
site delivers mail for a host that is not always reachable (a dial-up
customer, a backup MX) into a maildir, and this module pushes that
maildir to the host's QMTP server when it can, pipelined on one
connection. It is what C<qmtp-send --maildir DIR PREFIX> runs.

=head2 Message format

Each file in F<DIR/new> and F<DIR/cur> (names starting with a dot are
ignored; F<tmp/> is never read) is one message that starts with its
envelope, as qmail-local writes it:

 Return-Path: <sender>
 Delivered-To: recipient
 ...the message...

The first line must be C<Return-Path:> with the sender in angle brackets
(C<E<lt>E<gt>> is the null sender), the second C<Delivered-To:> (header
names in any case). These two lines are removed; the rest of the file is
sent byte for byte, with the unix encoding (lines end in LF); later
C<Delivered-To:> lines are part of the message and stay. C<PREFIX> is
removed from the start of the recipient (C<ppp-user@example.com> with
prefix C<ppp-> is sent to C<user@example.com>); an empty prefix takes every
recipient as it is. Flags in a F<cur/> name (C<:2,S>) change nothing.

=head2 What happens to each message

Each message has one outcome, reported through C<on_message> and
counted in the result of C<flush>:

=over 4

=item accepted

The server accepted it (K): the file is removed.

=item bounced

The server rejected it permanently (D), or rejected it temporarily (Z)
and the message is older than C<max_age>: a bounce in qmail-send's
format (QSBMF: "Hi. This is the qmtp-send program at HOST. I'm afraid I
wasn't able to deliver your message to the following addresses. ...",
then C<E<lt>recipientE<gt>:> and the server's text, then "--- Below this
line is a copy of the message." and the message with its C<Return-Path>)
was sent from the null sender to the envelope sender through the same
server, on the same connection, and accepted: the file is removed.

=item dropped

As bounced, but the sender is null (C<E<lt>E<gt>>) or qmail's double-bounce
sender C<#@[]>: no bounce is sent (that would loop); the file is removed.

=item bounce_failed

The bounce was not accepted (rejected, or not answered): the file is
kept, and the next run tries again.

=item deferred

The server rejected it temporarily (Z) and it is younger than
C<max_age>: kept.

=item not_sent

The message was not sent, or the server gave no answer for it (no
connection, connection lost, timeout, file unreadable): kept, whatever its
age. Only the server's own temporary rejection ages into a bounce;
failing to connect, or a lost connection, is never a rejection.

=item changed

The file changed while it was read (size or modification time), or
between being read and being removed: kept for the next run, which sends
it as it is then. A message is never sent half-read: it is read once,
and only a read that saw the whole file, unchanged from its opening to
its end, is sent. A file changed after it was sent is kept although the
server may have accepted the earlier version, so it may arrive twice
(a duplicate rather than a loss).

=item not_removed

Accepted or bounced, but the file could not be removed: it will be sent
again by the next run.

=item skipped

The recipient does not start with C<PREFIX>: left alone, not reported
unless verbose.

=item malformed

No C<Return-Path: E<lt>...E<gt>> line at the top, no C<Delivered-To:> after it,
control characters (CR LF line ends included) in those lines, or an
empty recipient after the prefix: left alone and reported on every run
until someone deals with it.

=back

The age of a message is counted from the earlier of its file's
modification time and the delivery time at the start of its maildir name
(C<1700000000.M...>), so that touching or copying a file does not make it
young again.

=head2 Memory

Messages are read as they are sent, one C<send_stream> over one
connection (see L<Net::QMTP/send_stream(OPTIONS)>) whose window holds at
most C<chunk_messages> (100) messages and about C<chunk_bytes> (64 MiB),
so that a maildir of any size flushes in the memory of one window, and
of the list of its file names, sorted oldest first: about 140 bytes a
message (a million messages, 140 MB). Accepted messages are removed as their
answers come; bounces go out between windows, at most a window's worth
at a time. A message bigger than C<memory_limit> (8 MiB) is not
held in memory: it is copied without its envelope lines into the maildir's
own F<tmp/> (same file system, name ending in C<.qmtp-send>) and streamed
from there; the copy is removed once the message is dealt with. A bounce
of such a message is built in F<tmp/> the same way. Copies left there by a
run that was killed are removed by a later run once they are 36 hours old.

=head2 Lock

A run takes an exclusive, non-blocking C<flock> on F<DIR/.qmtp-send.lock>
(created if missing, never removed) and holds it to the end. A second run
on the same maildir finds it taken, does nothing, and ends with status
111 and the error "DIR is being flushed by another process": like
daemontools' C<setlock -n>, it means "not done now, try later", and
nothing is lost, since the first run is flushing the messages. A lock
file that cannot be created for lack of permission is status 100.

=head1 CONSTRUCTOR

=head2 new(OPTIONS)

Dies (C<croak>) on a missing or invalid option. Options:

 dir              the maildir (required)
 prefix           removed from recipients; others are skipped (required; '' for all)
 server           QMTP server, as Net::QMTP's HOST (required)
 port             default 209
 timeout          Net::QMTP Timeout, default 120
 connect_timeout  Net::QMTP ConnectTimeout
 tls              Net::QMTP's TLS options, e.g. { SSL => 1, SSL_ca_file => FILE }
 answers          Net::QMTP Answers: 'auto' (default), 'recipient', 'package'
 debug            true: Net::QMTP Debug
 max_age          seconds after which a temporary rejection bounces;
                  default 1209600 (two weeks, qmail's queuelifetime);
                  0 bounces every temporary rejection
 chunk_messages   messages in a window of the stream, default 100
 chunk_bytes      bytes of messages in a window, default 64 MiB
 memory_limit     larger messages are spooled to DIR/tmp, default 8 MiB
 bounce_host      HOST in the bounce's From: MAILER-DAEMON@HOST and text;
                  default /var/qmail/control/bouncehost, then
                  /var/qmail/control/me, then the host name
 on_message       code called with a hash per message (see flush)
 lock             default 1; 0 skips the lock (the caller holds one)

=head1 METHODS

=head2 flush()

Flushes the maildir once and returns a hash reference of counts, one key
per outcome above (C<accepted>, C<bounced>, C<dropped>, C<bounce_failed>,
C<deferred>, C<not_sent>, C<changed>, C<not_removed>, C<skipped>,
C<malformed>), plus:

 status   0 when nothing is left to retry and nothing was rejected
          (everything accepted, or nothing to do); 100 when something
          was rejected permanently (bounced or dropped), a message is
          malformed, or the configuration is wrong (DIR is not a
          maildir); 111 when a message is kept to be tried again
          (deferred, not_sent, changed, bounce_failed, not_removed), the
          server could not be reached, or another run holds the lock.
          The worst wins: 111 over 100 over 0.
 error    undef, or why the run stopped early (not a maildir, the lock,
          no connection)

No connection is made when there is nothing to send. A connection that
cannot be made keeps every message and stops the run (status 111);
messages already dealt with by then stay dealt with.

C<on_message> is called once per message with a hash: C<file> (C<new/NAME>
or C<cur/NAME>), C<path>, C<sender>, C<recipient> (as in the file,
prefix included; undef when malformed), C<outcome>, C<text> (the server's
answer and what was done, e.g. C<failure: 5.1.1 no such user; bounced to
a@example.org; removed>) and C<removed> (1 when the file is gone).

Dies only when Net::QMTP refuses an option value (a port out of range...).

=head1 FUNCTIONS

=head2 run_cli(\%OPT, DIR, PREFIX)

What C<qmtp-send --maildir> calls. C<%OPT> has qmtp-send's options:
C<server>, C<port>, C<timeout>, C<connect-timeout>, C<answers>, C<debug>,
C<verbose>, C<quiet>, C<max-age>. Returns the exit status (as C<status>
above; 100 for a usage error). Report: one line per message,
C<PATH TAB RECIPIENT TAB TEXT>. By default (for cron) it prints nothing
when everything was accepted, and every problem (each outcome but
accepted and skipped) and the reason a run stopped on standard error.
C<verbose> adds the accepted and skipped messages and a summary line on
standard output. C<quiet> prints nothing but configuration errors: rely
on the exit status.

=head1 SEE ALSO

L<Net::QMTP>, L<qmtp-send>, serialmail's maildirqmtp(1) and maildirserial(1),
qmail-send's bounce format (QSBMF).

=cut

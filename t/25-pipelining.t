#!perl
# send_many(): QMTP pipelining (§2) against the scripted server in t/lib.
# Results come back one per job, in order, each exactly what the server
# answered for that job's recipients; every byte on the wire is checked;
# the client really pipelines (a server that reads everything before
# answering anything is served), cannot deadlock (tiny socket buffers on
# the server, long answers), keeps answered jobs' answers when the
# connection drops, sends again only what was not written in full, goes on
# past a job whose file fails, learns how a server answers (once per
# package or once per recipient) and pipelines after that. Malformed jobs
# die before anything is sent. The real-server part is
# t/26-pipelining-mailfront.t.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use IO::Socket::INET;
use Socket qw(SOL_SOCKET SO_SNDBUF);
use Time::HiRes ();

use Net::QMTP;
use lib 't/lib';
use Test::QMTPServer;

# A hang must fail the test, not block CI: the default action of SIGALRM
# terminates the process whatever the code under test is doing (a Perl
# handler would not run while the C core waits in poll()).
$SIG{ALRM} = 'DEFAULT';
alarm 600;
$SIG{PIPE} = 'DEFAULT';    # a SIGPIPE would kill the test: it must never come

my %PREFIX = (K => 'success: ', Z => 'deferral: ', D => 'failure: ');
my $DIR = tempdir(CLEANUP => 1);

# Runs one case as a subtest under its own alarm; a die inside is a
# failure, not the end of the file.
sub case {
	my ($name, $secs, $code) = @_;
	alarm $secs;
	subtest $name => sub {
		my $ok = eval { $code->(); 1 };
		fail("$name: died: $@") unless $ok;
	};
	alarm 600;
}

# ---------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------

sub ns { length($_[0]) . ':' . $_[0] . ',' }

# The package the client must send for a job ($enc is the byte).
sub package_bytes {
	my ($enc, $sender, $rcpts, $message) = @_;
	return ns($enc . $message) . ns($sender) . ns(join '', map { ns($_) } @$rcpts);
}

my %ENC = (unix => "\012", dos => "\015");

# The package for a job hash; $default is the object's encoding byte and
# message bodies of file jobs are read from the file now.
sub job_package {
	my ($job, $default) = @_;
	my $enc = defined $job->{encoding} ? $ENC{ $job->{encoding} } : $default;
	my $msg = defined $job->{message} ? $job->{message} : slurp($job->{file});
	return package_bytes($enc, $job->{sender}, $job->{recipients}, $msg);
}

sub slurp {
	my ($path) = @_;
	open my $fh, '<', $path or die "$path: $!";
	binmode $fh;
	local $/;
	my $data = <$fh>;
	return defined $data ? $data : '';
}

sub spit {
	my ($path, $bytes) = @_;
	open my $fh, '>', $path or die "$path: $!";
	binmode $fh;
	print {$fh} $bytes or die "$path: $!";
	close $fh or die "$path: $!";
}

sub printable {
	my ($s) = @_;
	$s =~ s/([^\x20-\x7e])/sprintf('\\x%02x', ord $1)/ge;
	return $s;
}

# Byte-exact comparison of possibly huge strings, reporting the first
# difference instead of dumping them.
sub is_bytes {
	my ($got, $want, $name) = @_;
	return pass($name) if defined $got && $got eq $want;
	fail($name);
	return diag('got undef') unless defined $got;
	my $i = 0;
	my $step = 4096;
	while ($step >= 1) {
		$i += $step while $i + $step <= length($got) && $i + $step <= length($want)
			&& substr($got, $i, $step) eq substr($want, $i, $step);
		$step = int($step / 2);
	}
	my $from = $i > 40 ? $i - 40 : 0;
	diag(sprintf "lengths: got %d, expected %d; first difference at byte %d\n"
			. "  got:      ...%s\n  expected: ...%s",
		length $got, length $want, $i,
		printable(substr($got, $from, 100)), printable(substr($want, $from, 100)));
	return 0;
}

sub client {
	my ($srv, %opt) = @_;
	my $q = Net::QMTP->new('127.0.0.1:' . $srv->port, Timeout => 5, %opt)
		or die "cannot connect to the test server: $@";
	$q->encoding('unix');
	return $q;
}

sub timed_send_many {
	my ($q, @jobs) = @_;
	my @warnings;
	local $SIG{__WARN__} = sub { push @warnings, $_[0] };
	my $t0 = Time::HiRes::time();
	my $res = eval { $q->send_many(@jobs) };
	my $died = $@;
	return ($res, Time::HiRes::time() - $t0, $died, @warnings);
}

# The answer a well-behaved per-recipient server gives, encoding which
# connection, which package on it, which recipient of it, the sender, the
# recipient and the message length: misattribution cannot go unnoticed.
# Recipients starting with 'z' get Z, with 'd' get D, the others K.
sub identity_answer {
	my ($conn, $p, $i, $pkg) = @_;
	my $r = $pkg->{recipients}[ $i - 1 ];
	my $code = $r =~ /^z/ ? 'Z' : $r =~ /^d/ ? 'D' : 'K';
	return "$code" . "c$conn p$p r$i <$pkg->{sender}> <$r> " . length($pkg->{message});
}

sub serve_identity {
	my ($c, $n, $p0) = @_;
	my $p = $p0 || 0;
	while (my $pkg = $c->read_package) {
		$p++;
		$c->respond(map { identity_answer($n, $p, $_, $pkg) } 1 .. @{ $pkg->{recipients} }) or last;
	}
}

sub identity_server {
	my (%opt) = @_;
	return Test::QMTPServer->new(%opt, script => sub { serve_identity(@_) });
}

# What a job's entry must be when package $p on connection $conn carried
# it and an identity server answered it.
sub identity_entry {
	my ($job, $conn, $p, $default_enc, %opt) = @_;
	my $enc = defined $job->{encoding} ? $ENC{ $job->{encoding} } : $default_enc;
	my $msg = defined $job->{message} ? $job->{message} : slurp($job->{file});
	my $pkg = { sender => $job->{sender}, recipients => $job->{recipients}, message => $msg, enc => $enc };
	my @answers;
	for my $i (1 .. @{ $job->{recipients} }) {
		my $a = identity_answer($conn, $p, $i, $pkg);
		push @answers, [ $job->{recipients}[ $i - 1 ], substr($a, 0, 1), substr($a, 1), 1,
			$opt{per_package} || 0 ];
	}
	return entry(\@answers);
}

# An expected entry from [recipient, code, text, received, per_package]
# lists (text may be a qr//); error undef, result the hash send() makes.
sub entry {
	my ($answers, $error) = @_;
	my %result;
	$result{ $_->[0] } = [ $_->[1], $_->[2] ] for @$answers;
	return {
		answers => $answers,
		result  => \%result,
		error   => $error,
	};
}

# A job that was not sent: result undef, error matching $re.
sub unsent_entry {
	my ($re) = @_;
	return { unsent => 1, error => $re };
}

# Compares send_many's answer with expected entries. Texts given as qr//
# are matched, the rest compared exactly, structure and all.
sub results_ok {
	my ($got, $want, $name) = @_;
	is(ref $got, 'ARRAY', "$name: an array reference") or return;
	is(scalar @$got, scalar @$want, "$name: one entry per job");
	my $false_success = 0;
	for my $j (0 .. $#$want) {
		my $tag = "$name: job " . ($j + 1);
		my $g = $got->[$j];
		my $w = $want->[$j];
		is(ref $g, 'HASH', "$tag: a hash") or next;
		is_deeply([ sort keys %$g ], [qw(error responses result)], "$tag: keys error, responses, result");
		for my $resp (@{ ref $g->{responses} eq 'ARRAY' ? $g->{responses} : [] }) {
			$false_success++ if ref $resp eq 'HASH' && defined $resp->{code}
				&& $resp->{code} eq 'K' && !$resp->{received};
		}
		if ($w->{unsent}) {
			is($g->{result}, undef, "$tag: result undef (not sent)");
			like(defined $g->{error} ? $g->{error} : '', $w->{error}, "$tag: error says why");
			is(ref $g->{responses}, 'ARRAY', "$tag: responses is an array reference");
			ok(!grep({ ref $_ eq 'HASH' && ($_->{code} || '') eq 'K' } @{ $g->{responses} || [] }),
				"$tag: no success in responses");
			next;
		}
		if (defined $w->{error}) {
			like(defined $g->{error} ? $g->{error} : '', $w->{error}, "$tag: error");
		} else {
			is($g->{error}, undef, "$tag: error undef") or diag("error: $g->{error}");
		}
		# Expected structures with the regexps resolved against what came.
		my (@want_resp, %want_result);
		my @got_resp = ref $g->{responses} eq 'ARRAY' ? @{ $g->{responses} } : ();
		for my $k (0 .. $#{ $w->{answers} }) {
			my ($rcpt, $code, $text, $received, $pp) = @{ $w->{answers}[$k] };
			my $gt = ref $got_resp[$k] eq 'HASH' ? $got_resp[$k]{text} : undef;
			if (ref $text) {
				$text = defined $gt && $gt =~ $text ? $gt : "(text matching $text)";
			}
			push @want_resp, {
				recipient   => $rcpt,
				code        => $code,
				text        => $text,
				response    => $PREFIX{$code} . $text,
				received    => $received,
				per_package => $pp,
			};
			$want_result{$rcpt} = $PREFIX{$code} . $text;
		}
		is_deeply($g->{responses}, \@want_resp, "$tag: responses, per recipient in order")
			or diag(explain($g->{responses}));
		is_deeply($g->{result}, \%want_result, "$tag: result hash") or diag(explain($g->{result}));
	}
	is($false_success, 0, "$name: no success that the server did not send");
}

# A size larger than anything the kernel can buffer between client and
# server (the client's largest send buffer plus a margin), so that the
# client is still writing the package when the server acts.
sub big_size {
	my ($min) = @_;
	my $wmem = 4 * 1024 * 1024;
	if (open my $fh, '<', '/proc/sys/net/ipv4/tcp_wmem') {
		my @v = split ' ', scalar <$fh>;
		$wmem = $v[2] if @v == 3 && $v[2] =~ /^\d+\z/;
	}
	my $size = $wmem + 2 * 1024 * 1024;
	return $size > $min ? $size : $min;
}

sub unused_port {
	my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp', Listen => 1)
		or die "cannot bind: $@";
	my $port = $s->sockport;
	close $s;
	return $port;
}

# send_many on a Debug client that, the moment it announces sending jobs
# again on a new connection, is pointed at a port nobody listens on: the
# new connection is refused, deterministically.
sub send_many_no_reconnect {
	my ($q, @jobs) = @_;
	my $dead = '127.0.0.1:' . unused_port();
	my $announced = 0;
	local $SIG{__WARN__} = sub {
		return unless $_[0] =~ /again on a new connection/;
		$announced++;
		$q->server($dead);
	};
	my $t0 = Time::HiRes::time();
	my $res = eval { $q->send_many(@jobs) };
	return ($res, Time::HiRes::time() - $t0, $@, $announced);
}

sub simple_jobs {
	my ($n, $tag) = @_;
	return map { { sender => "s$_\@$tag", recipients => ["r$_\@$tag"], message => "Subject: $tag $_\n\nbody $_\n" } }
		1 .. $n;
}

# ---------------------------------------------------------------------
# 1. Shape and order
# ---------------------------------------------------------------------

case 'shape and order: 50 mixed jobs' => 60 => sub {
	my $srv = identity_server();
	my $q = client($srv);
	$q->encoding('dos');    # jobs without 'encoding' take the object's
	$q->sender('obj@x');
	$q->recipient('objr@x');
	$q->message("obj\n");

	my $big = join '', map { chr(($_ * 7) % 256) } 1 .. 300_000;
	my @jobs;
	for my $j (1 .. 50) {
		my $nr = 1 + ($j * 7) % 3;
		my @rcpts = map {
			my $kind = ($j + $_) % 5 == 0 ? 'z' : ($j + $_) % 7 == 0 ? 'd' : 'k';
			"$kind$j.$_\@example.org";
		} 1 .. $nr;
		$rcpts[-1] = $rcpts[0] if $j % 6 == 0 && $nr > 1;     # duplicate inside the job
		push @rcpts, $rcpts[0] if $j % 10 == 3;                 # and one more, trailing
		my %job = (sender => $j == 5 || $j == 33 ? '' : "s$j\@example.org", recipients => \@rcpts);
		$job{encoding} = 'dos' if $j % 5 == 1;
		$job{encoding} = 'unix' if $j % 5 == 2;
		my $body = $j % 5 == 1 ? "Subject: job $j\r\n\r\nline\0 \xff\r\n" : "Subject: job $j\n\nline\0 \xff\n";
		if ($j == 7 || $j == 40) {
			$body = '';                                           # empty message
		} elsif ($j == 9) {
			$body = "caf\xe9 $j\n";
			utf8::upgrade($body);                                 # characters, all below 0x100
		} elsif ($j == 20) {
			$body = $big;
		} elsif ($j == 21) {
			$body = "x" x 70_000 . "\n";
		}
		if ($j % 4 == 0) {
			my $path = "$DIR/job-$j";
			$body = $big . $j if $j == 16;                        # a file sent by sendfile
			spit($path, $j == 12 ? '' : $body);                   # job 12: an empty file
			$job{file} = $path;
		} else {
			$job{message} = $body;
		}
		push @jobs, \%job;
	}
	my $expect_wire = join '', map { job_package($_, "\015") } @jobs;
	my @want = map { identity_entry($jobs[$_], 0, $_ + 1, "\015") } 0 .. $#jobs;

	my ($res, $t, $died, @warnings) = timed_send_many($q, [@jobs]);    # one array reference
	is($died, '', 'send_many does not die');
	is($q->error, undef, 'error() undef');
	results_ok($res, \@want, '50 jobs');
	is_deeply(\@warnings, [], 'no warning');
	is_bytes($srv->received(0), $expect_wire, 'every package on the wire, byte for byte, in job order');
	is($srv->connections, 1, 'all on one connection');
	note(sprintf '50 jobs took %.3f s', $t);

	is($q->sender, 'obj@x', "the object's sender is untouched");
	is_deeply($q->recipient, ['objr@x'], "the object's recipients are untouched");
	is($q->message, "obj\n", "the object's message is untouched");
	is_deeply($q->send, { 'objr@x' => "success: c0 p51 r1 <obj\@x> <objr\@x> 4" },
		"send() afterwards sends the object's own message, on the same connection")
		or diag($q->error);
	is_bytes($srv->received(0), $expect_wire . package_bytes("\015", 'obj@x', ['objr@x'], "obj\n"),
		'... as the 51st package');
};

# ---------------------------------------------------------------------
# 2. Really pipelined
# ---------------------------------------------------------------------

case 'really pipelined: the server reads all 20 packages before answering' => 30 => sub {
	my $srv = Test::QMTPServer->new(script => sub {
		my ($c, $n) = @_;
		my @pkgs;
		for (1 .. 20) {
			my $pkg = $c->read_package or return;
			push @pkgs, $pkg;
		}
		$c->respond(map { "Kc$n got <$_->{sender}> <$_->{recipients}[0]>" } @pkgs) or return;
		1 while $c->read_package;
	});
	my $q = client($srv, Timeout => 2);
	my @jobs = simple_jobs(20, 'pipe');
	my ($res, $t, $died) = timed_send_many($q, @jobs);
	is($died, '', 'send_many does not die');
	results_ok($res, [ map { entry([ [ "r$_\@pipe", 'K', "c0 got <s$_\@pipe> <r$_\@pipe>", 1, 0 ] ]) } 1 .. 20 ],
		'20 jobs answered at once');
	cmp_ok($t, '<', 1, 'well within the 2 s timeout: nothing waited for an answer');
	note(sprintf 'took %.3f s', $t);
	is($srv->connections, 1, 'one connection');
	is_bytes($srv->received(0), join('', map { job_package($_, "\012") } @jobs), 'the 20 packages on the wire');
};

case 'answers split across packages: in 7-byte pieces and a byte at a time' => 60 => sub {
	my $srv = Test::QMTPServer->new(script => sub {
		my ($c, $n) = @_;
		my @pkgs;
		for (1 .. 10) {
			my $pkg = $c->read_package or return;
			push @pkgs, $pkg;
		}
		my $stream = join '', map { ns("Kc$n <$_->{recipients}[0]>") } @pkgs;
		if ($n == 0) {
			# Pieces that straddle the boundary between two packages' answers.
			for (my $i = 0; $i < length $stream; $i += 7) {
				$c->write(substr $stream, $i, 7) or return;
				$c->sleep(0.002);
			}
		} else {
			$c->write_slowly($stream, 0.001) or return;
		}
		1 while $c->read_package;
	});
	for my $round (0, 1) {
		my $q = client($srv, Timeout => 5);
		my @jobs = simple_jobs(10, "split$round");
		my ($res, $t, $died) = timed_send_many($q, @jobs);
		is($died, '', "round $round: send_many does not die");
		results_ok($res, [ map { entry([ [ "r$_\@split$round", 'K', "c$round <r$_\@split$round>", 1, 0 ] ]) } 1 .. 10 ],
			$round ? 'answers dribbled a byte at a time, each to its own job' : 'answers in pieces across packages, each to its own job');
		$q->disconnect;
	}
};

# ---------------------------------------------------------------------
# 3. Deadlock freedom
# ---------------------------------------------------------------------

case 'no deadlock: 100 x 200 KB, 60000-byte answers, 4 KiB server buffers' => 60 => sub {
	my $srv = Test::QMTPServer->new(rcvbuf => 4096, script => sub {
		my ($c, $n) = @_;
		setsockopt($c->socket, SOL_SOCKET, SO_SNDBUF, 4096) or die "SO_SNDBUF: $!";
		my $p = 0;
		while (my $pkg = $c->read_package) {
			$p++;
			my $text = "c$n p$p <$pkg->{sender}> ";
			$c->respond('K' . $text . ('a' x (60000 - length $text))) or last;
		}
	});
	my $q = client($srv, MaxResponse => 100000, Timeout => 10);
	my @jobs = map {
		my $head = "Subject: big $_\n\n";
		{ sender => "s$_\@dl", recipients => ["r$_\@dl"],
		  message => $head . (chr(65 + $_ % 26) x (200_000 - length $head)) }
	} 1 .. 100;
	my ($res, $t, $died) = timed_send_many($q, @jobs);
	is($died, '', 'send_many does not die');
	cmp_ok($t, '<', 20, 'completes within 20 s');
	note(sprintf 'took %.3f s', $t);
	results_ok($res, [ map {
		my $text = "c0 p$_ <s$_\@dl> ";
		entry([ [ "r$_\@dl", 'K', $text . ('a' x (60000 - length $text)), 1, 0 ] ]);
	} 1 .. 100 ], '100 big jobs');
	is($srv->connections, 1, 'one connection');
	is_bytes($srv->received(0), join('', map { job_package($_, "\012") } @jobs),
		'the 20 MB of packages on the wire, byte for byte');
};

# ---------------------------------------------------------------------
# 4. The server drops the connection after answering 3 of 10
# ---------------------------------------------------------------------

case 'drop after 3 answered packages: the rest are deferrals, not sent again' => 30 => sub {
	my $srv = Test::QMTPServer->new(script => sub {
		my ($c, $n) = @_;
		if ($n > 0) {
			serve_identity($c, $n);
			return;
		}
		for (1 .. 10) {
			$c->read_package or return;
		}
		$c->respond(map { "Kc0 answered $_" } 1 .. 3);
		# and close
	});
	my $q = client($srv);
	my @jobs = simple_jobs(10, 'drop');
	my ($res, $t, $died) = timed_send_many($q, @jobs);
	is($died, '', 'send_many does not die');
	like($q->error // '', qr/closed by the server/, 'error() says what happened to the answers');
	my $why = qr/\Ano response received: .*closed by the server/;
	results_ok($res, [
		(map { entry([ [ "r$_\@drop", 'K', "c0 answered $_", 1, 0 ] ]) } 1 .. 3),
		(map { entry([ [ "r$_\@drop", 'Z', $why, 0, 0 ] ]) } 4 .. 10),
	], 'dropped after 3');
	cmp_ok($t, '<', 3, 'no waiting for a timeout');
	Time::HiRes::sleep(0.3);
	is($srv->connections, 1, 'no second connection: nothing was sent again');
	is_bytes($srv->received(0), join('', map { job_package($_, "\012") } @jobs),
		'each of the 10 packages was sent exactly once');
};

# ---------------------------------------------------------------------
# 5. Jobs not written in full are sent again on a new connection
# ---------------------------------------------------------------------

case 'jobs not written in full go again on a new connection' => 60 => sub {
	my $size = big_size(2 * 1024 * 1024);
	my $srv = Test::QMTPServer->new(rcvbuf => 4096, script => sub {
		my ($c, $n) = @_;
		if ($n > 0) {
			serve_identity($c, $n);
			return;
		}
		for (1 .. 2) {
			$c->read_package or return;
			$c->respond(identity_answer(0, $_, 1, $c->last_package)) or return;
		}
		$c->read_bytes(100_000);    # part of package 3, then hang up
	});
	my $q = client($srv);
	my @jobs = simple_jobs(5, 'again');
	$jobs[2]{message} = 'B' x $size;
	# Job 5 comes from a file large enough for sendfile: it is opened
	# again for the second connection.
	spit("$DIR/again-5", "Subject: again 5\n\n" . ('f' x 100_000) . "\n");
	delete $jobs[4]{message};
	$jobs[4]{file} = "$DIR/again-5";
	my ($res, $t, $died) = timed_send_many($q, @jobs);
	is($died, '', 'send_many does not die');
	is($q->error, undef, 'error() undef');
	results_ok($res, [
		identity_entry($jobs[0], 0, 1, "\012"),
		identity_entry($jobs[1], 0, 2, "\012"),
		identity_entry($jobs[2], 1, 1, "\012"),
		identity_entry($jobs[3], 1, 2, "\012"),
		identity_entry($jobs[4], 1, 3, "\012"),
	], 'jobs 1-2 on connection 0, 3-5 on connection 1');
	is($srv->connections, 2, 'two connections');
	my @p0 = $srv->packages(0);
	is(scalar @p0, 2, 'connection 0: two complete packages');
	is_bytes(join('', map { $_->{raw} } @p0), join('', map { job_package($_, "\012") } @jobs[0, 1]),
		'connection 0: jobs 1 and 2');
	my $got = length $srv->received(0);
	my $two = length join '', map { job_package($_, "\012") } @jobs[0, 1];
	cmp_ok($got, '<', $two + length(job_package($jobs[2], "\012")), 'connection 0: job 3 was cut off')
		or diag("received $got bytes");
	is_bytes($srv->received(1), join('', map { job_package($_, "\012") } @jobs[2 .. 4]),
		'connection 1: jobs 3, 4 and 5, byte for byte');
};

case 'jobs not written in full, and no new connection to be had' => 60 => sub {
	my $size = big_size(2 * 1024 * 1024);
	my $srv = Test::QMTPServer->new(rcvbuf => 4096, script => sub {
		my ($c, $n) = @_;
		return serve_identity($c, $n) if $n > 0;
		for (1 .. 2) {
			$c->read_package or return;
			$c->respond(identity_answer(0, $_, 1, $c->last_package)) or return;
		}
		$c->read_bytes(100_000);    # part of package 3, then hang up
	});
	my $q = do { local $SIG{__WARN__} = sub { }; client($srv, Debug => 1) };    # quiet
	my @jobs = simple_jobs(5, 'nomore');
	$jobs[2]{message} = 'B' x $size;
	my ($res, $t, $died, $announced) = send_many_no_reconnect($q, @jobs);
	is($died, '', 'send_many does not die');
	is($announced, 1, 'the client went to send jobs again, once');
	is(ref $res, 'ARRAY', 'send_many returns the results (jobs were tried)');
	like($q->error || '', qr/refused/, 'error() says why no new connection');
	results_ok($res, [
		identity_entry($jobs[0], 0, 1, "\012"),
		identity_entry($jobs[1], 0, 2, "\012"),
		(unsent_entry(qr/\Anot sent: /)) x 3,
	], 'no second connection');
	cmp_ok($t, '<', 5, 'no waiting for a timeout');
	is($srv->connections, 1, 'one connection');
	is_bytes(join('', map { $_->{raw} } $srv->packages(0)),
		join('', map { job_package($_, "\012") } @jobs[0, 1]), 'connection 0: jobs 1 and 2 only');
};

# ---------------------------------------------------------------------
# 6. File failures in a batch
# ---------------------------------------------------------------------

case 'a missing file fails its job only' => 30 => sub {
	my $srv = identity_server();
	my $q = client($srv);
	spit("$DIR/f1", "Subject: f1\n\none\n");
	spit("$DIR/f3", "Subject: f3\n\nthree\n");
	my @jobs = (
		{ sender => 's1@f', recipients => ['r1@f'], file => "$DIR/f1" },
		{ sender => 's2@f', recipients => ['r2@f', 'k2@f'], file => "$DIR/no-such-file" },
		{ sender => 's3@f', recipients => ['r3@f'], file => "$DIR/f3" },
		{ sender => 's4@f', recipients => ['r4@f', 'z4@f'], message => "four\n" },
		{ sender => 's5@f', recipients => ['r5@f'], file => "$DIR/f1" },
	);
	my ($res, $t, $died) = timed_send_many($q, @jobs);
	is($died, '', 'send_many does not die');
	is($q->error, undef, 'error() undef');
	results_ok($res, [
		identity_entry($jobs[0], 0, 1, "\012"),
		unsent_entry(qr/Cannot open file '\Q$DIR\E\/no-such-file'/),
		identity_entry($jobs[2], 0, 2, "\012"),
		identity_entry($jobs[3], 0, 3, "\012"),
		identity_entry($jobs[4], 0, 4, "\012"),
	], 'missing file');
	is($srv->connections, 1, 'one connection');
	is_bytes($srv->received(0), join('', map { job_package($_, "\012") } @jobs[0, 2, 3, 4]),
		'the other four packages on the wire, nothing of job 2');
};

case 'a file that shrinks while being sent' => 60 => sub {
	my $path = "$DIR/shrinking";
	my $size = 20 * 1024 * 1024;
	spit($path, 'm' x $size);
	my $srv = Test::QMTPServer->new(rcvbuf => 4096, script => sub {
		my ($c, $n) = @_;
		if ($n > 0) {
			serve_identity($c, $n);
			return;
		}
		for (1 .. 2) {
			$c->read_package or return;
			$c->respond(identity_answer(0, $_, 1, $c->last_package)) or return;
		}
		$c->read_bytes(1024 * 1024);    # well into job 3's file ...
		truncate $path, 512 * 1024 or die "truncate: $!";
		$c->read_until_eof;
	});
	my $q = client($srv);
	my @jobs = simple_jobs(5, 'shrink');
	delete $jobs[2]{message};
	$jobs[2]{file} = $path;
	my ($res, $t, $died, @warnings) = timed_send_many($q, @jobs);
	is($died, '', 'send_many does not die');
	is($q->error, undef, 'error() undef');
	note("warning: $_") for @warnings;
	results_ok($res, [
		identity_entry($jobs[0], 0, 1, "\012"),
		identity_entry($jobs[1], 0, 2, "\012"),
		unsent_entry(qr/\AFile '\Q$path\E' shrank/),
		identity_entry($jobs[3], 1, 1, "\012"),
		identity_entry($jobs[4], 1, 2, "\012"),
	], 'shrinking file');
	ok($srv->wait_done(0, 10), 'connection 0 is over');
	is($srv->connections, 2, 'two connections');
	my @p0 = $srv->packages(0);
	is(scalar @p0, 2, 'connection 0: two complete packages, job 3 was aborted');
	is_bytes(join('', map { $_->{raw} } @p0), join('', map { job_package($_, "\012") } @jobs[0, 1]),
		'connection 0: jobs 1 and 2');
	is_bytes($srv->received(1), join('', map { job_package($_, "\012") } @jobs[3, 4]),
		'connection 1: jobs 4 and 5 only (job 3 is not sent again)');
	unlink $path;
};

case 'a shrinking file, and no new connection: the jobs after it are not blamed' => 60 => sub {
	my $path = "$DIR/shrinking2";
	spit($path, 'm' x (20 * 1024 * 1024));
	my $srv = Test::QMTPServer->new(rcvbuf => 4096, script => sub {
		my ($c, $n) = @_;
		return serve_identity($c, $n) if $n > 0;
		$c->read_package or return;
		$c->respond(identity_answer(0, 1, 1, $c->last_package)) or return;
		$c->read_bytes(1024 * 1024);
		truncate $path, 512 * 1024 or die "truncate: $!";
		$c->read_until_eof;
	});
	my $q = do { local $SIG{__WARN__} = sub { }; client($srv, Debug => 1) };    # quiet
	my @jobs = simple_jobs(4, 'blame');
	delete $jobs[1]{message};
	$jobs[1]{file} = $path;
	my ($res, $t, $died, $announced) = send_many_no_reconnect($q, @jobs);
	is($died, '', 'send_many does not die');
	is($announced, 1, 'the client went to send jobs 3 and 4 again');
	results_ok($res, [
		identity_entry($jobs[0], 0, 1, "\012"),
		unsent_entry(qr/\AFile '\Q$path\E' shrank/),
		(unsent_entry(qr/\Anot sent: /)) x 2,
	], 'shrinking file, no reconnect');
	for my $j (3, 4) {
		my $err = ref $res eq 'ARRAY' && $res->[ $j - 1 ] ? $res->[ $j - 1 ]{error} : undef;
		unlike(defined $err ? $err : '', qr/shrank|\Q$path\E/,
			"job $j (a message in memory): its error does not blame job 2's file");
		note("job $j error: " . (defined $err ? $err : 'undef'));
	}
	unlink $path;
};

# ---------------------------------------------------------------------
# 7. A server that answers once per package, not yet known as such
# ---------------------------------------------------------------------

case 'once-per-package server, mode unknown at first: 10 jobs of 3' => 30 => sub {
	my $srv = Test::QMTPServer->new(script => sub {
		my ($c, $n) = @_;
		# mailfront's way: one answer per package; EOF (the client's
		# half-close) ends the session.
		my $p = 0;
		while (my $pkg = $c->read_package) {
			$p++;
			$c->respond("Kc$n p$p <$pkg->{sender}> " . length $pkg->{message}) or last;
		}
	});
	my @jobs = map {
		{ sender => "s$_\@once", recipients => [ "a$_\@once", "b$_\@once", "c$_\@once" ],
		  message => "Subject: once $_\n\n" . ('o' x $_) . "\n" }
	} 1 .. 10;
	# Unknown, 'auto': a connection shows how the server answers only by
	# hanging up after one answer and the half-close, so every job of
	# several recipients has a connection of its own; the first waits
	# HalfCloseAfter, the others half-close at once.
	my $q = client($srv);
	my ($res, $t, $died) = timed_send_many($q, @jobs);
	is($died, '', 'send_many does not die');
	is($q->error, undef, 'error() undef');
	my @want = map {
		my $j = $_;
		my $text = "c" . ($j - 1) . " p1 <s$j\@once> " . length $jobs[ $j - 1 ]{message};
		entry([ map { [ $_, 'K', $text, 1, 1 ] } @{ $jobs[ $j - 1 ]{recipients} } ]);
	} 1 .. 10;
	results_ok($res, \@want, 'once per package');
	cmp_ok($t, '<', 3, 'within 3 s');
	note(sprintf 'took %.3f s', $t);
	is($srv->connections, 10, 'ten connections: each job alone, its hang-up confirming it');
	is_bytes($srv->received($_ - 1), job_package($jobs[ $_ - 1 ], "\012"), "connection @{[ $_ - 1 ]}: job $_ alone")
		for 1 .. 10;

	# Declared: every job pipelined on one connection, no waiting.
	my $before = $srv->connections;
	my $d = client($srv, Answers => 'package');
	($res, $t, $died) = timed_send_many($d, @jobs);
	is($died, '', 'declared: send_many does not die');
	is($d->error, undef, 'declared: error() undef');
	@want = map {
		my $j = $_;
		my $text = "c$before p$j <s$j\@once> " . length $jobs[ $j - 1 ]{message};
		entry([ map { [ $_, 'K', $text, 1, 1 ] } @{ $jobs[ $j - 1 ]{recipients} } ]);
	} 1 .. 10;
	results_ok($res, \@want, 'declared once per package');
	is($srv->connections, $before + 1, 'declared: one connection');
	is_bytes($srv->received($before), join('', map { job_package($_, "\012") } @jobs),
		'declared: every job on it, in order');
	cmp_ok($t, '<', 0.4, 'declared: no half-close wait');
};

case 'once-per-package server: single-recipient jobs before the first multi-recipient one' => 30 => sub {
	my $srv = Test::QMTPServer->new(script => sub {
		my ($c, $n) = @_;
		my $p = 0;
		while (my $pkg = $c->read_package) {
			$p++;
			$c->respond("Kc$n p$p <$pkg->{sender}>") or last;
		}
	});
	my $q = client($srv);
	my @n = (1, 1, 3, 2, 1, 3, 1, 2);
	my @jobs = map {
		my $j = $_;
		{ sender => "s$j\@mix", recipients => [ map { "r$j.$_\@mix" } 1 .. $n[ $j - 1 ] ], message => "mix $j\n" }
	} 1 .. @n;
	my ($res, $t, $died) = timed_send_many($q, @jobs);
	is($died, '', 'send_many does not die');
	is($q->error, undef, 'error() undef');
	# Nothing may follow a job of several recipients on its connection
	# until it is answered, and its one answer is confirmed by the hang-up
	# after the half-close: connection 0 carries jobs 1-3, then 4, 5-6 and
	# 7-8 go on connections of their own.
	my %at = (1 => [0, 1], 2 => [0, 2], 3 => [0, 3], 4 => [1, 1], 5 => [2, 1], 6 => [2, 2], 7 => [3, 1], 8 => [3, 2]);
	is(ref $res, 'ARRAY', 'results') or return;
	for my $j (1 .. @n) {
		my ($conn, $p) = @{ $at{$j} };
		my $e = $res->[ $j - 1 ] || {};
		is($e->{error}, undef, "job $j: error undef");
		is_deeply($e->{result}, { map { $_ => "success: c$conn p$p <s$j\@mix>" } @{ $jobs[ $j - 1 ]{recipients} } },
			"job $j: every recipient has the answer of its own package");
		my @r = @{ $e->{responses} || [] };
		is_deeply([ map { [ $_->{recipient}, $_->{code}, $_->{text}, $_->{received} ] } @r ],
			[ map { [ $_, 'K', "c$conn p$p <s$j\@mix>", 1 ] } @{ $jobs[ $j - 1 ]{recipients} } ],
			"job $j: responses");
		is_deeply([ map { $_->{per_package} } @r ], [ (1) x @r ], "job $j: per_package 1")
			if @r > 1 || $j > 3;    # before the mode was known a lone answer may read either way
	}
	cmp_ok($t, '<', 3, 'within 3 s');
	is($srv->connections, 4, 'four connections');
	is_bytes($srv->received(2), join('', map { job_package($_, "\012") } @jobs[4 .. 5]),
		'connection 2: jobs 5 and 6');
};

# ---------------------------------------------------------------------
# 8. A server that answers per recipient, with several recipients per job
# ---------------------------------------------------------------------

case 'per-recipient server: learnt from job 1, the rest pipelined' => 30 => sub {
	my $srv = Test::QMTPServer->new(script => sub {
		my ($c, $n) = @_;
		$c->timeout(5);
		return serve_identity($c, $n) if $n > 0;
		# Job 1 must come alone and be answered before anything follows.
		my $first = $c->read_package or return;
		$c->respond(map { identity_answer(0, 1, $_, $first) } 1 .. 3) or return;
		# Then nothing is answered until all 9 others are in: a client
		# that waited for answers before writing would stall here.
		my @rest;
		for (2 .. 10) {
			my $pkg = $c->read_package or return;
			push @rest, $pkg;
		}
		my $p = 1;
		for my $pkg (@rest) {
			$p++;
			$c->respond(map { identity_answer(0, $p, $_, $pkg) } 1 .. 3) or return;
		}
		serve_identity($c, 0, $p);
	});
	my $q = client($srv, Timeout => 3);
	my @jobs = map {
		my $j = $_;
		{ sender => "s$j\@rcpt", recipients => [ "k$j\@rcpt", ($j % 2 ? 'z' : 'd') . "$j\@rcpt", "k$j\@rcpt" ],
		  message => "Subject: per recipient $j\n\n" }
	} 1 .. 10;
	my ($res, $t, $died) = timed_send_many($q, @jobs);
	is($died, '', 'send_many does not die');
	is($q->error, undef, 'error() undef');
	results_ok($res, [ map { identity_entry($jobs[$_], 0, $_ + 1, "\012") } 0 .. 9 ], 'per recipient');
	cmp_ok($t, '<', 2, 'no waiting for the 3 s timeout: pipelined after job 1');
	note(sprintf 'took %.3f s', $t);
	is($srv->connections, 1, 'one connection');
	is_bytes($srv->received(0), join('', map { job_package($_, "\012") } @jobs), 'the 10 packages on the wire');
};

case 'spec server that waits for the half-close before its other answers' => 30 => sub {
	my $srv = Test::QMTPServer->new(script => sub {
		my ($c, $n) = @_;
		if ($n == 1) {
			# Jobs 2-8 answered as they come; then the 4 jobs of the
			# second batch are all read before any is answered: only a
			# client that still knows how this server answers pipelines
			# them (otherwise it waits for the first one's answers).
			my $p = 0;
			for (1 .. 7) {
				my $pkg = $c->read_package or return;
				$p++;
				$c->respond(map { identity_answer(1, $p, $_, $pkg) } 1 .. @{ $pkg->{recipients} }) or return;
			}
			my @batch;
			for (1 .. 4) {
				my $pkg = $c->read_package or return;
				push @batch, $pkg;
			}
			for my $pkg (@batch) {
				$p++;
				$c->respond(map { identity_answer(1, $p, $_, $pkg) } 1 .. @{ $pkg->{recipients} }) or return;
			}
			return serve_identity($c, $n, $p);
		}
		return serve_identity($c, $n) if $n > 1;
		my $pkg = $c->read_package or return;
		$c->respond(identity_answer(0, 1, 1, $pkg)) or return;
		$c->wait_eof(10) or return;    # the client must half-close
		$c->respond(map { identity_answer(0, 1, $_, $pkg) } 2, 3);
	});
	my $q = client($srv, Timeout => 2);
	my @jobs = map {
		{ sender => "s$_\@late", recipients => [ "k$_\@late", "z$_\@late", "d$_\@late" ], message => "late $_\n" }
	} 1 .. 8;
	my ($res, $t, $died) = timed_send_many($q, @jobs);
	is($died, '', 'send_many does not die');
	is($q->error, undef, 'error() undef');
	results_ok($res, [
		identity_entry($jobs[0], 0, 1, "\012"),
		map { identity_entry($jobs[$_], 1, $_, "\012") } 1 .. 7,
	], 'every answer per recipient, after the half-close too');
	cmp_ok($t, '<', 3, 'within 3 s');
	ok($srv->client_closed(0), 'the client half-closed connection 0');
	is($srv->connections, 2, 'jobs 2-8 went on a second connection');

	# Known now to answer per recipient: no half-close, no new connection.
	my @more = map {
		{ sender => "m$_\@late", recipients => [ "k$_\@late", "z$_\@late" ], message => "more $_\n" }
	} 1 .. 4;
	($res, $t, $died) = timed_send_many($q, @more);
	is($died, '', 'a second send_many does not die');
	results_ok($res, [ map { identity_entry($more[$_], 1, 8 + $_, "\012") } 0 .. 3 ], 'second batch');
	cmp_ok($t, '<', 1, 'pipelined at once, no waiting for answers or a half-close');
	is($srv->connections, 2, 'on the same connection');
	is_bytes($srv->received(1), join('', map { job_package($_, "\012") } @jobs[1 .. 7], @more),
		'connection 1: jobs 2-8 of the first batch, then the second batch');
};

# ---------------------------------------------------------------------
# 9. Input errors
# ---------------------------------------------------------------------

case 'malformed jobs die before anything is sent' => 60 => sub {
	my $srv = identity_server();
	my $q = client($srv);
	my $good = { sender => 's@in', recipients => ['r@in'], message => "m\n" };
	my %g = %$good;
	my @bad = (
		['an array reference', [], qr/is not a hash reference/],
		['a string', 'job', qr/is not a hash reference/],
		['undef', undef, qr/is not a hash reference/],
		['unknown key', { %g, subject => 'x' }, qr/unknown key 'subject'/],
		['no sender', { recipients => ['r@in'], message => "m\n" }, qr/no sender/],
		['undefined sender', { %g, sender => undef }, qr/no sender/],
		['no recipients', { sender => 's', message => "m\n" }, qr/recipients must be a non-empty array reference/],
		['recipients empty', { %g, recipients => [] }, qr/recipients must be a non-empty array reference/],
		['recipients a string', { %g, recipients => 'r@in' }, qr/recipients must be a non-empty array reference/],
		['recipients a hash', { %g, recipients => { 'r@in' => 1 } }, qr/recipients must be a non-empty array reference/],
		['an undefined recipient', { %g, recipients => [ 'r@in', undef ] }, qr/undefined recipient/],
		['both message and file', { %g, file => "$DIR/f1" }, qr/exactly one of message and file/],
		['neither message nor file', { sender => 's', recipients => ['r'] }, qr/exactly one of message and file/],
		['undefined message, no file', { %g, message => undef }, qr/exactly one of message and file/],
		['bad encoding', { %g, encoding => 'mac' }, qr/Unknown encoding: 'mac'/],
		['an encoding with a NUL byte after it', { %g, encoding => "unix\0junk" }, qr/Unknown encoding: 'unix\0junk'/],
		['an encoding ending in a NUL byte', { %g, encoding => "dos\0" }, qr/Unknown encoding: 'dos\0'/],
		['wide character in sender', { %g, sender => "s\x{263a}\@in" }, qr/Wide character in sender/],
		['wide character in recipient', { %g, recipients => [ 'r@in', "\x{263a}\@in" ] },
			qr/Wide character in recipient/],
		['wide character in message', { %g, message => "m \x{263a}\n" }, qr/Wide character in message/],
	);
	my $i = 0;
	for my $b (@bad) {
		my ($what, $job, $re) = @$b;
		my $pos = 1 + $i++ % 3;    # first, middle or last of three
		my @jobs = ({%g}, {%g});
		splice @jobs, $pos - 1, 0, $job;
		my $res = eval { $q->send_many(@jobs); 1 };
		my $err = $@;
		ok(!$res, "$what: send_many dies");
		like($err, qr/job $pos\b/, "$what: the message names job $pos");
		like($err, $re, "$what: and says what is wrong");
		like($err, qr/ at \Q$0\E line \d+/, "$what: reported at the caller's line");
	}
	# The same, passed as one array reference.
	ok(!eval { $q->send_many([ {%g}, { %g, encoding => 'ebcdic' } ]); 1 }, 'array reference form dies too');
	like($@, qr/job 2\b.*Unknown encoding: 'ebcdic'/, '... naming job 2');
	Time::HiRes::sleep(0.3);
	is($srv->received(0), '', 'not a byte was sent for any of them');

	my $res = eval { $q->send_many({%g}) };
	is($@, '', 'a good job afterwards does not die');
	results_ok($res, [ identity_entry($good, 0, 1, "\012") ], 'after the errors');
	is_bytes($srv->received(0), job_package($good, "\012"), 'and is the only package on the wire');

	$res = 'unset';
	is(eval { $res = $q->send_many(); 1 }, 1, 'send_many() with no jobs does not die');
	is($res, undef, '... returns undef');
	like($q->error || '', qr/no jobs/, '... error() says there are no jobs');
	$res = 'unset';
	is(eval { $res = $q->send_many([]); 1 }, 1, 'send_many([]) does not die');
	is($res, undef, '... returns undef');
	like($q->error || '', qr/no jobs/, '... error() says there are no jobs');

	{
		local $SIG{__WARN__} = sub { };
		ok($q->disconnect, 'disconnect()');
	}
	$res = 'unset';
	is(eval { $res = $q->send_many({%g}); 1 }, 1, 'send_many after disconnect() does not die');
	is($res, undef, '... returns undef');
	like($q->error || '', qr/not connected/, '... error() says not connected');
	Time::HiRes::sleep(0.2);
	is($srv->connections, 1, '... and no connection was opened');

	my $d = Net::QMTP->new('127.0.0.1:' . $srv->port, DeferConnect => 1, Timeout => 5);
	$res = 'unset';
	is(eval { $res = $d->send_many({%g}); 1 }, 1, 'DeferConnect without reconnect(): does not die');
	is($res, undef, '... returns undef');
	like($d->error || '', qr/not connected/, '... error() says not connected');
};

# ---------------------------------------------------------------------
# 10. Debug
# ---------------------------------------------------------------------

case 'Debug shows a >>> line per package' => 30 => sub {
	my $srv = identity_server();
	my @lines;
	local $SIG{__WARN__} = sub { push @lines, $_[0] };
	my $q = client($srv, Debug => 1);
	spit("$DIR/dbg", "Subject: dbg\n\nfrom a file\n");
	my @jobs = (simple_jobs(4, 'dbg'), { sender => 's5@dbg', recipients => [ 'r5@dbg', 'k5@dbg' ], file => "$DIR/dbg" });
	my $res = $q->send_many(@jobs);
	ok($res && !grep({ defined $_->{error} } @$res), 'send_many with Debug') or diag(explain($res));
	my $all = join '', @lines;
	my @sent = $all =~ /^Net::QMTP=HASH\(0x[0-9a-f]+\) >>> (.*)$/mg;
	is(scalar @sent, 5, 'one >>> line per package');
	for my $j (1 .. 5) {
		like($sent[ $j - 1 ] || '', qr/,6:s$j\@dbg,/, ">>> line $j shows the sender of job $j");
	}
	like($sent[4] || '', qr/\[file \Q$DIR\E\/dbg, \d+ bytes\].*18:6:r5\@dbg,6:k5\@dbg,,/,
		'the file job shows the file and the recipients');
	my @got = $all =~ /<<< (K[^\n]*)$/mg;
	ok(scalar(grep { /c0 p\d r\d/ } @got) >= 5, 'the answers are shown with <<<');
};

# ---------------------------------------------------------------------
# 11. A server that reads everything and never answers
# ---------------------------------------------------------------------

case 'no answer at all: every recipient a deferral, nothing sent again' => 30 => sub {
	my $srv = Test::QMTPServer->new(script => sub {
		my ($c, $n) = @_;
		$c->wait_eof(20);
	});
	my $q = client($srv, Timeout => 1);
	# Two single-recipient jobs, then one of two recipients: while the
	# server's way of answering is unknown, all three may be written.
	my @jobs = map { { sender => "s$_\@mute", recipients => [ map { "r$_\@mute" } 1 .. $_ ], message => "mute $_\n" } } 1, 1, 2;
	my ($res, $t, $died) = timed_send_many($q, @jobs);
	is($died, '', 'send_many does not die');
	like($q->error // '', qr/timed out/, 'error() says what happened to the answers');
	my $why = qr/\Ano response received: .*timed out/;
	results_ok($res, [ map { entry([ map { [ $_, 'Z', $why, 0, 0 ] } @{ $_->{recipients} } ]) } @jobs ],
		'never answered');
	cmp_ok($t, '<', 4, 'gave up after about the timeout');
	ok($srv->wait_done(0, 5), 'the client closed the connection');
	is($srv->connections, 1, 'nothing was sent again');
	is_bytes($srv->received(0), join('', map { job_package($_, "\012") } @jobs), 'the 3 packages, once');
};

# ---------------------------------------------------------------------
# 12. responses() is about send(), not send_many()
# ---------------------------------------------------------------------

case 'responses() after send_many() still describes the last send()' => 30 => sub {
	my $srv = identity_server();
	my $q = client($srv);
	$q->sender('s@resp');
	$q->recipient('one@resp');
	$q->message("m\n");
	is_deeply($q->send, { 'one@resp' => 'success: c0 p1 r1 <s@resp> <one@resp> 2' }, 'send()');
	my $want = [ { recipient => 'one@resp', code => 'K', text => 'c0 p1 r1 <s@resp> <one@resp> 2',
		response => 'success: c0 p1 r1 <s@resp> <one@resp> 2', received => 1, per_package => 0 } ];
	my $res = $q->send_many(
		{ sender => 'a@resp', recipients => [ 'x@resp', 'y@resp' ], message => "1\n" },
		{ sender => 'b@resp', recipients => ['z@resp'], message => "2\n" },
	);
	ok($res && !grep({ defined $_->{error} } @$res), 'send_many()');
	is_deeply($q->responses, $want, "responses() after send_many(): the last send()'s answers, not the batch's")
		or diag(explain($q->responses));

	# The same when responses() was already looked at before send_many().
	is_deeply($q->send, { 'one@resp' => 'success: c0 p4 r1 <s@resp> <one@resp> 2' }, 'send() again');
	$want->[0]{text} = 'c0 p4 r1 <s@resp> <one@resp> 2';
	$want->[0]{response} = 'success: ' . $want->[0]{text};
	is_deeply($q->responses, $want, 'responses() after send()');
	$q->send_many({ sender => 'c@resp', recipients => ['w@resp'], message => "3\n" });
	is_deeply($q->responses, $want, 'responses() after send_many(), looked at before: unchanged');
};

alarm 0;
done_testing();

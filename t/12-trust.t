#!perl
# Results you can trust: what the Perl side of send() and send_many()
# promises beside the C core's invariants. A NUL byte, a port out of range
# or (under -T) a tainted value is refused at the caller's line; error()
# says what happened to answers after a message was written, while the
# results are still returned; responses() speaks of the recipients as they
# went out; send_many() does not resend after a timeout, and does resend
# once when the server had closed the connection while it was idle; the
# Answers and TotalTimeout options do what they say.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes ();

use Net::QMTP;
use lib 't/lib';
use Test::QMTPServer;
use Test::QMTPFaults;

# A hang must fail the test, not block CI.
$SIG{ALRM} = 'DEFAULT';
alarm 300;

my $DIR  = tempdir(CLEANUP => 1);
my $FILE = __FILE__;
my $AT   = qr/ at \Q$FILE\E line \d+\.?\n\z/;
my $FDS_BEFORE = fd_count();

sub spit {
	my ($path, $bytes) = @_;
	open my $fh, '>:raw', $path or die "$path: $!";
	print $fh $bytes;
	close $fh or die "$path: $!";
	return $path;
}

sub client {
	my ($srv, %opt) = @_;
	my $q = Net::QMTP->new('127.0.0.1:' . $srv->port, Timeout => 5, %opt)
		or die "cannot connect to the test server: $@";
	return $q;
}

sub dies_like {
	my ($code, $re, $name) = @_;
	my $ok = eval { $code->(); 1 };
	ok(!$ok, "$name: dies") or return;
	like($@, $re, "$name: says why, at the caller's line");
}

# ---------------------------------------------------------------------
# Options: Answers, TotalTimeout, Port
# ---------------------------------------------------------------------

case 'Answers: auto, recipient or package, nothing else' => sub {
	for my $v (qw(auto recipient package)) {
		my @w;
		local $SIG{__WARN__} = sub { push @w, @_ };
		my $q = eval { Net::QMTP->new('127.0.0.1', DeferConnect => 1, Answers => $v) };
		ok($q, "Answers => '$v' is accepted") or diag $@;
		is("@w", '', "... without a warning");
	}
	ok(eval { Net::QMTP->new('127.0.0.1', DeferConnect => 1, Answers => undef) }, 'Answers => undef: the default');
	for my $v ('bogus', 'Auto', 'packages', '', "auto\0") {
		(my $shown = $v) =~ s/\0/\\x00/g;
		dies_like(sub { Net::QMTP->new('127.0.0.1', DeferConnect => 1, Answers => $v) },
			qr/\AAnswers must be 'auto', 'recipient' or 'package', not '\Q$shown\E'$AT/, "Answers => '$shown'");
	}
};

case 'TotalTimeout: a positive number of seconds' => sub {
	ok(eval { Net::QMTP->new('127.0.0.1', DeferConnect => 1, TotalTimeout => 2.5) }, 'TotalTimeout => 2.5')
		or diag $@;
	for my $v (0, -1, 'soon', '') {
		dies_like(sub { Net::QMTP->new('127.0.0.1', DeferConnect => 1, TotalTimeout => $v) },
			qr/\ATotalTimeout must be a positive number of seconds, not '\Q$v\E'$AT/, "TotalTimeout => '$v'");
	}
};

case 'ports: 1 to 65535 or a service name, in Port and in HOST' => sub {
	dies_like(sub { Net::QMTP->new('127.0.0.1', DeferConnect => 1, Port => 0) },
		qr/\APort must be a number from 1 to 65535 or a service name, not '0'$AT/, 'Port => 0');
	dies_like(sub { Net::QMTP->new('127.0.0.1', DeferConnect => 1, Port => '') },
		qr/\APort must be /, "Port => ''");
	for my $host ('127.0.0.1:70000', '127.0.0.1:0', 'mx.example:65536', '[::1]:0', '[::1]:70000', 'h:2 09') {
		my ($port) = $host =~ /:([^:]*)\z/;
		dies_like(sub { Net::QMTP->new($host, DeferConnect => 1) },
			qr/\AThe port in server '\Q$host\E' must be a number from 1 to 65535 or a service name, not '\Q$port\E'$AT/,
			"new('$host')");
	}
	dies_like(sub { Net::QMTP->new(['127.0.0.1:209', '127.0.0.2:99999'], DeferConnect => 1) },
		qr/\AThe port in server '127\.0\.0\.2:99999' /, 'a list with one bad port');
	my $q = Net::QMTP->new('127.0.0.1', DeferConnect => 1);
	dies_like(sub { $q->server('127.0.0.1:70000') }, qr/\AThe port in server '127\.0\.0\.1:70000' .*$AT/,
		'server() checks the port too');
	is($q->server, '127.0.0.1', '... and keeps the server it had');
	for my $host ('127.0.0.1:65535', '127.0.0.1:1', 'mx.example:qmtp', '[::1]:209', '[::1]', '::1', '/tmp/qmtp.sock') {
		ok(eval { Net::QMTP->new($host, DeferConnect => 1) }, "new('$host') is accepted") or diag $@;
	}
};

# ---------------------------------------------------------------------
# A NUL byte cuts a name short in C: refused
# ---------------------------------------------------------------------

case 'a NUL byte in a server, LocalAddr or file name' => sub {
	dies_like(sub { Net::QMTP->new("127.0.0.1\0.evil", DeferConnect => 1) },
		qr/\AServer '127\.0\.0\.1\\x00\.evil' contains a NUL byte$AT/, 'new()');
	dies_like(sub { Net::QMTP->new(['127.0.0.1', "/tmp/sock\0x"], DeferConnect => 1) },
		qr/\AServer '\/tmp\/sock\\x00x' contains a NUL byte$AT/, 'new() with a list');
	my $q = Net::QMTP->new('127.0.0.1', DeferConnect => 1);
	dies_like(sub { $q->server("localhost\0:25") }, qr/contains a NUL byte$AT/, 'server()');
	is($q->server, '127.0.0.1', '... which keeps the server it had');
	dies_like(sub { Net::QMTP->new('127.0.0.1', DeferConnect => 1, LocalAddr => "127.0.0.1\0x") },
		qr/\ALocalAddr '127\.0\.0\.1\\x00x' contains a NUL byte$AT/, 'LocalAddr');
	my $path = spit("$DIR/hostname", "Subject: not this one\n\n");
	dies_like(sub { $q->message_from_file("$path\0.msg") },
		qr/\Amessage_from_file: file name '\Q$path\E\\x00\.msg' contains a NUL byte$AT/, 'message_from_file()');
	is($q->message_from_file, undef, '... which keeps no file');
	dies_like(sub { $q->send_many({ sender => 's@x', recipients => ['a@x'], file => "$path\0.msg" }) },
		qr/\Asend_many: job 1: file name contains a NUL byte$AT/, 'a send_many job\'s file');
};

# ---------------------------------------------------------------------
# Taint mode: refused as core Perl refuses them
# ---------------------------------------------------------------------

case 'taint mode: tainted host, port, LocalAddr and file name' => sub {
	my $srv = Test::QMTPServer->new(sub { serve_well($_[0]) });
	my $msg = spit("$DIR/taint.msg", "Subject: taint\n\nbody\n");
	my $child = <<'EOS';
use strict;
use warnings;
use Net::QMTP;
my ($host, $port, $file) = @ARGV;       # tainted, as all of @ARGV is
my ($uhost) = $host =~ /\A(.*)\z/s;     # and untainted copies
my ($uport) = $port =~ /\A(\d+)\z/;
my ($ufile) = $file =~ /\A(.*)\z/s;
$| = 1;
sub try {
    my ($name, $code) = @_;
    my $r = eval { $code->() };
    (my $why = defined $@ ? $@ : '') =~ s/\n/ /g;
    print "$name\t", ($why ne '' ? "died\t$why" : "ok\t" . (defined $r ? $r : 'undef')), "\n";
}
sub connected { my $q = shift; $q ? 'connected' : "undef: $@" }
sub send_file {
    my ($q, $f) = @_;
    $q->sender('s@x');
    $q->recipient('a@x');
    $q->message_from_file($f);
    my $r = $q->send;
    return $r ? $r->{'a@x'} : 'error: ' . $q->error;
}
try('tainted host', sub { connected(Net::QMTP->new("$host:$uport")) });
try('tainted port in HOST', sub { connected(Net::QMTP->new("$uhost:$port")) });
try('tainted Port', sub { connected(Net::QMTP->new($uhost, Port => $port)) });
try('tainted LocalAddr', sub { connected(Net::QMTP->new("$uhost:$uport", LocalAddr => $host)) });
try('tainted host, at reconnect()', sub {
    my $q = Net::QMTP->new("$host:$uport", DeferConnect => 1);
    $q->reconnect ? 'connected' : 'undef';
});
try('untainted', sub { send_file(Net::QMTP->new("$uhost:$uport"), $ufile) });
try('tainted file', sub { send_file(Net::QMTP->new("$uhost:$uport"), $file) });
try('tainted file in send_many', sub {
    my $q = Net::QMTP->new("$uhost:$uport");
    my $r = $q->send_many({ sender => 's@x', recipients => ['a@x'], file => $file });
    $r->[0]{result} ? $r->[0]{result}{'a@x'} : "error: $r->[0]{error}";
});
EOS
	my @inc = map { "-I$_" } grep { !ref && -d } @INC;
	open my $out, '-|', $^X, '-T', @inc, '-e', $child, '127.0.0.1', $srv->port, $msg
		or die "cannot run perl -T: $!";
	my %got = map { chomp; my ($name, $rest) = split /\t/, $_, 2; ($name => $rest) } <$out>;
	close $out;
	is($?, 0, 'the perl -T child ran to its end');
	my $connect = qr/\Adied\tInsecure dependency in connect while running with -T switch at -e line \d+/;
	my $open    = qr/\Adied\tInsecure dependency in open while running with -T switch at -e line \d+/;
	like($got{'tainted host'} // 'missing', $connect, 'a tainted host: Insecure dependency in connect');
	like($got{'tainted port in HOST'} // 'missing', $connect, 'a tainted host:port');
	like($got{'tainted Port'} // 'missing', $connect, 'a tainted Port');
	like($got{'tainted LocalAddr'} // 'missing', $connect, 'a tainted LocalAddr');
	like($got{'tainted host, at reconnect()'} // 'missing', $connect, 'a tainted host, refused at reconnect()');
	is($got{untainted}, "ok\tsuccess: ok", 'untainted values connect and send as usual');
	like($got{'tainted file'} // 'missing', $open, 'a tainted message file name: Insecure dependency in open');
	like($got{'tainted file in send_many'} // 'missing', $open, '... in send_many too');
	my $arrived = 0;
	$arrived += () = $srv->packages($_) for 0 .. $srv->connections - 1;
	is($arrived, 1, 'only the untainted message arrived');
	note explain \%got;
};

# ---------------------------------------------------------------------
# send(): error() after the message was written; responses() as sent
# ---------------------------------------------------------------------

for my $way ('usual', 'long') {
	# 'usual': one XS call (message in memory, no Debug); 'long': the
	# message from a file, which goes the Perl way.
	my $message = sub {
		my ($q, $text) = @_;
		return envelope($q, $text) if $way eq 'usual';
		envelope($q, '');
		$q->new_message;
		$q->message_from_file(spit("$DIR/msg-$way", $text));
	};

	case "send() ($way way): the server hangs up after the message: results and error()" => sub {
		my $srv = fault_server(sub { $_[0]->read_package });
		my $q = client($srv);
		$message->($q, "test\n");
		my ($res, $t, $died) = timed_send($q);
		is($died, '', 'send() does not die');
		is(ref $res, 'HASH', 'send() returns the hash (the message was written in full)');
		like($res->{$_} // '', qr/\Adeferral: no response received: /, "$_: deferral") for @RCPTS;
		like($q->error // 'undef', qr/closed by the server/, 'error() says what happened to the answers');
		no_false_success($q, $res, [], "$way: closed after 0");
		$message->($q, "next\n");
		$res = $q->send;
		is_deeply($res, { map { $_ => 'success: ok' } @RCPTS }, 'the next send() succeeds');
		is($q->error, undef, '... and error() is undef again');
	};

	case "send() ($way way): responses() made by a signal handler mid-send is not kept" => sub {
		my $srv = Test::QMTPServer->new(sub {
			my ($c) = @_;
			while ($c->read_package) {
				kill 'USR1', getppid();    # the client waits for the answers now
				$c->sleep(0.3);
				$c->answer_all('K', 'ok') or last;
			}
		});
		my $q = client($srv);
		$message->($q, "test\n");
		my $seen;
		local $SIG{USR1} = sub { $seen = $q->responses };
		my $res = $q->send;
		ok($seen, 'the handler ran during the send and called responses()');
		is_deeply($res, { map { $_ => 'success: ok' } @RCPTS }, 'send() succeeds');
		my $r = $q->responses;
		is(scalar @$r, 3, 'responses() afterwards has the three answers of the send');
		is_deeply([ map { $_->{response} } @$r ], [ ('success: ok') x 3 ], '... all of them');
	};

	case "send() ($way way): responses() names the recipients as they were sent" => sub {
		my $srv = Test::QMTPServer->new(sub {
			my ($c) = @_;
			while ($c->read_package) {
				kill 'USR1', getppid();
				$c->sleep(0.3);
				$c->answer_all('K', 'ok') or last;
			}
		});
		my $q = client($srv);
		$message->($q, "test\n");
		my $ran;
		local $SIG{USR1} = sub { $q->recipient->[0] = 'changed@x'; $ran = 1 };
		my $res = $q->send;
		ok($ran, 'the handler changed the first recipient in place during the send');
		ok($res, 'send() succeeds');
		is_deeply([ map { $_->{recipient} } @{ $q->responses } ], \@RCPTS,
			'responses() names the recipients the package went to');
		my @p = $srv->packages(0);
		is_deeply($p[0]{recipients}, \@RCPTS, '... which are the ones the server got');
	};
}

# ---------------------------------------------------------------------
# send_many(): after a timeout, nothing is sent again
# ---------------------------------------------------------------------

case 'send_many: after a timeout, the jobs not begun are not sent again' => sub {
	my $flag = "$DIR/timeout-go";
	my $srv = fault_server(sub {
		my ($c) = @_;
		$c->read_package or return;
		$c->answer_all('K', 'first');
		# Reads nothing more until the client has given up.
		my $deadline = Time::HiRes::time() + 20;
		$c->sleep(0.02) while !-e $flag && Time::HiRes::time() < $deadline;
	}, rcvbuf => 4096);
	my $q = client($srv, Timeout => 0.5);
	my @jobs = map { { sender => 's@x', recipients => ["r$_\@x"], message => "Subject: $_\n\nbody $_\n" } } 1 .. 5;
	$jobs[1]{message} = 'z' x (20 * 1024 * 1024);
	my $t0 = Time::HiRes::time();
	my $res = eval { $q->send_many(@jobs) };
	my $t = Time::HiRes::time() - $t0;
	spit($flag, '');
	is($@, '', 'send_many does not die');
	is(ref $res, 'ARRAY', 'send_many returns the results');
	is_deeply($res->[0]{result}, { 'r1@x' => 'success: first' }, 'job 1 was answered');
	is($res->[1]{result}, undef, 'job 2 (not written in full) was not sent');
	like($res->[1]{error} // '', qr/timed out/, '... its error says it timed out');
	for my $j (3 .. 5) {
		is($res->[ $j - 1 ]{result}, undef, "job $j was not sent");
		like($res->[ $j - 1 ]{error} // '', qr/\Anot sent: .*timed out/, "... its error says the connection timed out");
	}
	cmp_ok($t, '<', 4, sprintf('send_many came back after one Timeout (%.2f s)', $t));
	Time::HiRes::sleep(0.3);
	is($srv->connections, 1, 'no new connection: nothing was sent again');
};

# ---------------------------------------------------------------------
# send_many(): a connection the server closed while idle
# ---------------------------------------------------------------------

case 'send_many: the server closed the idle connection: the jobs go on a new one' => sub {
	my $srv = fault_server(sub { });    # closes at once
	my $q = client($srv);
	ok($srv->wait_done(0, 10), 'the server closed connection 0');
	Time::HiRes::sleep(0.1);
	my @jobs = map { { sender => 's@x', recipients => ["r$_\@x"], message => "Subject: $_\n\nidle $_\n" } } 1 .. 3;
	my $res = eval { $q->send_many(@jobs) };
	is($@, '', 'send_many does not die');
	is(ref $res, 'ARRAY', 'send_many returns the results');
	for my $j (1 .. 3) {
		is_deeply($res->[ $j - 1 ]{result}, { "r$j\@x" => 'success: ok' }, "job $j: sent and answered")
			or diag 'error: ' . ($res->[ $j - 1 ]{error} // 'undef');
	}
	is($q->error, undef, 'error() undef');
	is($srv->connections, 2, 'on a second connection');
	is_deeply([ map { $_->{message} } $srv->packages(1) ], [ map { $_->{message} } @jobs ],
		'connection 1 got the three messages');
};

case 'send_many: a server that closes every connection at once: sent again once only' => sub {
	my $srv = Test::QMTPServer->new(sub { });
	my $q = client($srv);
	ok($srv->wait_done(0, 10), 'the server closed connection 0');
	Time::HiRes::sleep(0.1);
	my @jobs = map { { sender => 's@x', recipients => ["r$_\@x"], message => "m$_\n" } } 1 .. 3;
	my $res = eval { $q->send_many(@jobs) };
	is($@, '', 'send_many does not die');
	is(ref $res, 'ARRAY', 'send_many returns the results');
	for my $j (1 .. 3) {
		# Not begun, or (if the second connection's end came only after
		# the package) written and deferred: never a success.
		my $r = $res->[ $j - 1 ] || {};
		ok($r->{result} ? $r->{result}{"r$j\@x"} =~ /\Adeferral: / : $r->{error} =~ /\Anot sent: /,
			"job $j: not sent, or a deferral") or diag explain $r;
	}
	Time::HiRes::sleep(0.3);
	cmp_ok($srv->connections, '<=', 2, 'no more than one new connection');
};

# ---------------------------------------------------------------------
# send_many(): error() after the messages were written
# ---------------------------------------------------------------------

case 'send_many: the server hangs up after answering 1 of 2: results and error()' => sub {
	my $srv = fault_server(sub {
		my ($c) = @_;
		$c->read_package or return;
		$c->read_package or return;
		$c->respond('Kfirst');
	});
	my $q = client($srv);
	my @jobs = map { { sender => 's@x', recipients => ["r$_\@x"], message => "m$_\n" } } 1 .. 2;
	my $res = eval { $q->send_many(@jobs) };
	is($@, '', 'send_many does not die');
	is(ref $res, 'ARRAY', 'send_many returns the results');
	is_deeply($res->[0]{result}, { 'r1@x' => 'success: first' }, 'job 1 answered');
	like($res->[1]{result}{'r2@x'} // '', qr/\Adeferral: no response received: /, 'job 2: a deferral');
	like($q->error // 'undef', qr/closed by the server/, 'error() says what happened to the answers');
	is($srv->connections, 1, 'nothing sent again (both were written in full)');
};

# ---------------------------------------------------------------------
# Answers
# ---------------------------------------------------------------------

# mailfront's way: one answer per package, and a client that half-closes
# ends the session.
sub per_package_server {
	my (%opt) = @_;
	my $first = delete $opt{first} || 1;
	return Test::QMTPServer->new(%opt, script => sub {
		my ($c, $n) = @_;
		my $p = 0;
		# The first packages are read before any is answered: only a
		# client that pipelines gets an answer at all.
		my @pkgs;
		for (1 .. $first) {
			my $pkg = $c->read_package or return;
			push @pkgs, $pkg;
		}
		$c->respond(map { $p++; "Kc$n p$p " . scalar @{ $_->{recipients} } } @pkgs) or return;
		while (my $pkg = $c->read_package) {
			$p++;
			$c->respond("Kc$n p$p " . scalar @{ $pkg->{recipients} }) or last;
		}
	});
}

case "Answers => 'package': pipelined, one answer per package, no half-close" => sub {
	my $srv = per_package_server(first => 3, timeout => 8);
	my $q = client($srv, Answers => 'package', HalfCloseAfter => 30, Timeout => 15);
	my @jobs = map { { sender => 's@x', recipients => ["a$_\@x", "b$_\@x"], message => "m$_\n" } } 1 .. 3;
	my $t0 = Time::HiRes::time();
	my $res = eval { $q->send_many(@jobs) };
	my $t = Time::HiRes::time() - $t0;
	is($@, '', 'send_many does not die');
	for my $j (1 .. 3) {
		is_deeply($res->[ $j - 1 ]{result}, { "a$j\@x" => "success: c0 p$j 2", "b$j\@x" => "success: c0 p$j 2" },
			"job $j: its one answer stands for both recipients")
			or diag explain $res->[ $j - 1 ];
		is_deeply([ map { $_->{per_package} } @{ $res->[ $j - 1 ]{responses} || [] } ], [ 1, 1 ],
			'... marked per_package');
	}
	cmp_ok($t, '<', 15, 'no waiting for HalfCloseAfter (30 s)');
	ok(!$srv->client_closed(0), 'the client did not half-close');

	envelope($q, "one-shot\n", 'x@x', 'y@x');
	$t0 = Time::HiRes::time();
	my $one = $q->send;
	$t = Time::HiRes::time() - $t0;
	is_deeply($one, { 'x@x' => 'success: c0 p4 2', 'y@x' => 'success: c0 p4 2' },
		'a one-shot send() to 2 recipients, on the same connection');
	is($q->error, undef, 'error() undef');
	cmp_ok($t, '<', 15, 'no waiting for HalfCloseAfter');
	ok(!$srv->client_closed(0), 'still no half-close: the connection goes on');
	is($srv->connections, 1, 'one connection for all of it');
};

case "Answers => 'recipient' against a server that answers once per package" => sub {
	my $srv = Test::QMTPServer->new(sub {
		my ($c, $n) = @_;
		$c->read_package or return;
		$c->respond('Kall');
		$c->wait_eof(10);    # a half-close, or the client gives up
	});
	my $q = client($srv, Answers => 'recipient', HalfCloseAfter => 0.3, Timeout => 2);
	envelope($q, "strict\n");
	my ($res, $t, $died) = timed_send($q);
	is($died, '', 'send() does not die');
	is(ref $res, 'HASH', 'send() returns the results');
	is($res->{'a@x'}, 'success: all', 'the one answer is the first recipient\'s');
	like($res->{$_} // '', qr/\Adeferral: /, "$_: a deferral, not the first one's answer") for @RCPTS[1, 2];
	no_false_success($q, $res, [0], 'declared per recipient');
	ok(!grep({ $_->{per_package} } @{ $q->responses }), 'no answer taken as per package');
	like($q->error // 'undef', qr/answers did not match its packages/, 'error() says the answers did not match');
	cmp_ok($t, '<', 2 + 3, sprintf('within Timeout and a margin (%.2f s)', $t));
};

# ---------------------------------------------------------------------
# TotalTimeout
# ---------------------------------------------------------------------

# An answer that trickles in a byte at a time, each just inside Timeout:
# without a limit on the whole call, it holds the client ~15 s.
sub trickle_server {
	return fault_server(sub {
		my ($c) = @_;
		while (my $pkg = $c->read_package) {
			my @answers = map { 'K' . ('t' x 49) } @{ $pkg->{recipients} };
			$c->write_slowly(join('', map { Test::QMTPServer::netstring($_) } @answers), 0.3) or return;
		}
	});
}

case 'TotalTimeout stops a server trickling inside every Timeout: send()' => sub {
	my $srv = trickle_server();
	my $q = client($srv, Timeout => 0.8, TotalTimeout => 1.5);
	envelope($q, "slow\n", 'a@x');
	my ($res, $t, $died) = timed_send($q);
	is($died, '', 'send() does not die');
	cmp_ok($t, '<', 1.5 + 2, sprintf('send() came back within TotalTimeout and a margin (%.2f s)', $t));
	ok(!defined $res || $res->{'a@x'} =~ /\Adeferral: /, 'the recipient is a deferral (or nothing was sent)')
		or diag explain $res;
	no_false_success($q, $res, [], 'TotalTimeout');
	like($q->error // 'undef', qr/call limit of 1\.5 s was reached/, 'error() says the call limit ended it, and what it was');
	note 'error: ' . ($q->error // 'undef');

	# The limit is the call's: the next send() has its own, on a server
	# that behaves.
	ok($srv->wait_done(0, 10), 'the trickling connection is over');
	envelope($q, "next\n", 'a@x');
	($res, $t, $died) = timed_send($q);
	is_deeply($res, { 'a@x' => 'success: ok' }, 'the next send() has a limit of its own and succeeds')
		or diag 'error: ' . ($q->error // 'undef');
};

case 'a TotalTimeout under a millisecond is a limit, not none' => sub {
	my $srv = fault_server(sub { my ($c) = @_; $c->read_package; $c->sleep(5) });
	my $q = client($srv, Timeout => 10);
	$q->{QMTP_TOTAL} = 0.0004; # as TotalTimeout => 0.0004 sets it, past the connect
	envelope($q, "quick\n", 'a@x');
	my ($res, $t) = timed_send($q);
	cmp_ok($t, '<', 2, sprintf('send() with TotalTimeout 0.0004 came back at once (%.2f s), not after the stall', $t));
	no_false_success($q, $res, [], 'TotalTimeout under 1 ms');
};

case 'TotalTimeout stops a server trickling inside every Timeout: send_many()' => sub {
	my $srv = trickle_server();
	my $q = client($srv, Timeout => 0.8, TotalTimeout => 1.5);
	my @jobs = map { { sender => 's@x', recipients => ["r$_\@x"], message => "m$_\n" } } 1 .. 3;
	my $t0 = Time::HiRes::time();
	my $res = eval { $q->send_many(@jobs) };
	my $t = Time::HiRes::time() - $t0;
	is($@, '', 'send_many does not die');
	cmp_ok($t, '<', 1.5 + 2, sprintf('send_many came back within TotalTimeout and a margin (%.2f s)', $t));
	is(ref $res, 'ARRAY', 'send_many returns the results');
	for my $j (1 .. 3) {
		my $r = $res->[ $j - 1 ] || {};
		ok(!$r->{result} || $r->{result}{"r$j\@x"} =~ /\Adeferral: /, "job $j: a deferral or not sent")
			or diag explain $r;
	}
	Time::HiRes::sleep(0.2);
	is($srv->connections, 1, 'nothing was sent again after the limit');
};

is(fd_count(), $FDS_BEFORE, 'no descriptor left open') if defined $FDS_BEFORE;

done_testing;

#!perl
# Faults in time: a server that never answers, stops in the middle of an
# answer, stops after some answers even once the client half-closed, never
# reads the package, or a listener that never completes the handshake.
# send() must come back within Timeout (plus a generous margin: these are
# correctness bounds, not benchmarks), never die, and leave the object
# usable. A slow but moving answer is not cut.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use IO::Socket::INET;
use Socket qw(PF_INET SOCK_STREAM pack_sockaddr_in unpack_sockaddr_in inet_aton);
use Time::HiRes ();

use Net::QMTP;
use lib 't/lib';
use Test::QMTPServer;
use Test::QMTPFaults;

# A hang must fail the test, not block CI: the default action of SIGALRM
# terminates the process whatever the code under test is doing.
$SIG{ALRM} = 'DEFAULT';
alarm 300;

my $TIMEOUT = 0.5;
my $MARGIN  = 1.5;

my $FDS_BEFORE = fd_count();

# A file the test creates once send() has returned: lets a fault script
# stall exactly as long as the client needs, then end.
sub flag_dir { tempdir(CLEANUP => 1) }

sub raise_flag {
	my ($dir) = @_;
	open my $fh, '>', "$dir/go" or die "flag: $!";
	close $fh;
}

sub wait_flag {
	my ($c, $dir) = @_;
	my $deadline = Time::HiRes::time() + 20;
	$c->sleep(0.02) while !-e "$dir/go" && Time::HiRes::time() < $deadline;
}

sub client {
	my ($srv, %opt) = @_;
	my $q = Net::QMTP->new('127.0.0.1:' . $srv->port, Timeout => $TIMEOUT, %opt)
		or die "cannot connect to the test server: $@";
	envelope($q, "test\n");
	return $q;
}

# The next message: the fault's connection 0 is over (its script done),
# the object reconnects by itself and the package lands on connection 1.
sub reuse_ok {
	my ($q, $srv, $name) = @_;
	ok($srv->wait_done(0, 20), "$name: the fault script ended");
	envelope($q, "next after $name\n");
	my $res = eval { $q->send };
	is($@, '', "$name: next send() does not die");
	ok($res, "$name: next send() succeeds") or diag 'error: ' . ($q->error // 'undef');
	is($q->error, undef, "$name: error() undef after the next send()");
	is_deeply($res, { map { $_ => 'success: ok' } @RCPTS }, "$name: next send() all success");
	my @p = $srv->packages(1);
	ok(@p && $p[-1]{message} eq "next after $name\n", "$name: next package arrived on connection 1");
}

my $TIMED_OUT = qr/\Ano response received: .*(?:timed out|no answer|timeout)/i;

# ---------------------------------------------------------------------
# The server stops answering
# ---------------------------------------------------------------------

case 'server reads the package and never answers' => sub {
	my $srv = fault_server(sub {
		my ($c) = @_;
		$c->read_package or return;
		$c->wait_eof(20);
	});
	my $q = client($srv);
	my ($res, $t, $died) = timed_send($q);
	is($died, '', 'send() does not die');
	ok($res, 'send() returns the results (the package was written in full)') or diag $q->error;
	like($q->error // '', qr/\Atimed out: no progress for 0\.5 s waiting for responses\z/, 'error() says what happened to the answers');
	cmp_ok($t, '<=', $TIMEOUT + $MARGIN, sprintf('send() returned after %.2f s, within Timeout + %.1f s', $t, $MARGIN));
	cmp_ok($t, '>=', $TIMEOUT * 0.8, 'send() waited for about Timeout');
	results_ok($q, $res, [ map { ['Z', $TIMED_OUT, 0, 0] } 1 .. 3 ], 'no answer');
	no_false_success($q, $res, [], 'no answer');
	ok($srv->wait_closed(0, 5), 'the client closed the connection');
	is(scalar(my @p = $srv->packages(0)), 1, 'the server had the whole package');
	reuse_ok($q, $srv, 'no answer');
};

case 'half an answer, then silence' => sub {
	my $srv = fault_server(sub {
		my ($c) = @_;
		$c->read_package or return;
		$c->write('5:Kok');
		$c->wait_eof(20);
	});
	my $q = client($srv);
	my ($res, $t, $died) = timed_send($q);
	is($died, '', 'send() does not die');
	ok($res, 'send() returns the results') or diag $q->error;
	like($q->error // '', qr/\Atimed out: no progress for 0\.5 s waiting for responses\z/, 'error() says what happened to the answers');
	cmp_ok($t, '<=', $TIMEOUT + $MARGIN, sprintf('send() returned after %.2f s', $t));
	results_ok($q, $res, [ map { ['Z', $TIMED_OUT, 0, 0] } 1 .. 3 ], 'half an answer');
	no_false_success($q, $res, [], 'half an answer');
	ok($srv->wait_closed(0, 5), 'the client closed the connection');
	reuse_ok($q, $srv, 'half an answer');
};

case '1 of 3 answers, then silence even after the half-close' => sub {
	my $flag = flag_dir();
	my $srv = fault_server(sub {
		my ($c) = @_;
		$c->read_package or return;
		$c->respond('Kfirst');
		$c->wait_eof(20);       # the client half-closes after HalfCloseAfter
		wait_flag($c, $flag);   # and then gets nothing more, no close either
	});
	my $q = client($srv);
	my ($res, $t, $died) = timed_send($q);
	raise_flag($flag);
	is($died, '', 'send() does not die');
	ok($res, 'send() returns the results') or diag $q->error;
	like($q->error // '', qr/\Atimed out: no progress for 0\.5 s waiting for responses\z/, 'error() says what happened to the answers');
	ok($srv->client_closed(0), 'the client half-closed');
	cmp_ok($t, '<=', 0.5 + $TIMEOUT + $MARGIN, sprintf('send() returned after %.2f s', $t));
	results_ok($q, $res, [ ['K', 'first', 1, 0], ['Z', $TIMED_OUT, 0, 0], ['Z', $TIMED_OUT, 0, 0] ],
		'silence after 1 of 3');
	no_false_success($q, $res, [0], 'silence after 1 of 3');
	reuse_ok($q, $srv, 'silence after 1 of 3');
};

case 'a slow but moving answer is not cut by Timeout' => sub {
	my $srv = Test::QMTPServer->new(script => sub {
		my ($c) = @_;
		$c->read_package or return;
		# 18 bytes, one every 0.1 s: 1.7 s in all, never 0.5 s idle.
		$c->write_slowly('3:Kok,3:Zok,3:Dok,', 0.1);
		$c->wait_eof(20);
	});
	my $q = client($srv);
	my ($res, $t, $died) = timed_send($q);
	is($died, '', 'send() does not die');
	ok($res, 'send() returns the results') or diag $q->error;
	cmp_ok($t, '>=', 1.2, sprintf('the answers took %.2f s, more than Timeout', $t));
	results_ok($q, $res, [ ['K', 'ok', 1, 0], ['Z', 'ok', 1, 0], ['D', 'ok', 1, 0] ], 'slow answers');
};

# ---------------------------------------------------------------------
# The server never reads
# ---------------------------------------------------------------------

case 'server never reads a big package' => sub {
	my $flag = flag_dir();
	my $srv = fault_server(sub {
		my ($c) = @_;
		wait_flag($c, $flag);   # reads nothing until the client gave up
	}, rcvbuf => 4096);
	my $q = client($srv);
	$q->new_message;
	$q->message('z' x (20 * 1024 * 1024));
	my ($res, $t, $died) = timed_send($q);
	raise_flag($flag);
	is($died, '', 'send() does not die');
	is($res, undef, 'send() returns undef: the package could not be written');
	like($q->error // '', qr/timed out/, 'error() says timed out');
	note 'error: ' . ($q->error // 'undef');
	cmp_ok($t, '<=', $TIMEOUT + $MARGIN, sprintf('send() returned after %.2f s', $t));
	my $r = $q->responses;
	is(scalar @$r, 3, 'responses() has one entry per recipient');
	ok(!grep({ $_->{code} ne 'Z' || $_->{received} } @$r), 'all made-up deferrals');
	no_false_success($q, $res, [], 'never reads');
	reuse_ok($q, $srv, 'never reads');
};

# ---------------------------------------------------------------------
# Connect timeout
# ---------------------------------------------------------------------

# A listener with a backlog of 0 and one connection it never accepts: on
# Linux its accept queue is then full and further SYNs are dropped, so a
# connect stays pending (until the SYN retry, 1 s later at the earliest).
sub full_listener {
	socket(my $l, PF_INET, SOCK_STREAM, 0) or die "socket: $!";
	bind($l, pack_sockaddr_in(0, inet_aton('127.0.0.1'))) or die "bind: $!";
	listen($l, 0) or die "listen: $!";
	my ($port) = unpack_sockaddr_in(getsockname($l));
	my $filler = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp', Timeout => 5)
		or die "filler connect: $@";
	return ($l, $filler, $port);
}

SKIP: {
	skip 'a full listen backlog drops SYNs only on Linux', 1 unless $^O eq 'linux';
	case 'ConnectTimeout: an address that never answers' => sub {
		my ($l, $filler, $port) = full_listener();
		my $t0 = Time::HiRes::time();
		my $q = Net::QMTP->new("127.0.0.1:$port", ConnectTimeout => 0.5, Timeout => 5);
		my $t = Time::HiRes::time() - $t0;
		my $err = $@;
		is($q, undef, 'new() returns undef');
		like($err, qr/timed out/, '$@ says timed out');
		like($err, qr/127\.0\.0\.1/, '$@ names the address');
		note "\$\@: $err";
		cmp_ok($t, '<=', 0.5 + $MARGIN, sprintf('new() gave up after %.2f s', $t));
		cmp_ok($t, '>=', 0.4, 'new() waited for about ConnectTimeout');

		my $d = Net::QMTP->new("127.0.0.1:$port", ConnectTimeout => 0.5, Timeout => 5, DeferConnect => 1);
		ok($d, 'DeferConnect: new() returns an object');
		$t0 = Time::HiRes::time();
		my $rc = eval { $d->reconnect };
		$t = Time::HiRes::time() - $t0;
		is($@, '', 'reconnect() does not die');
		is($rc, undef, 'reconnect() returns undef');
		like($d->error // '', qr/timed out/, 'error() says timed out');
		cmp_ok($t, '<=', 0.5 + $MARGIN, sprintf('reconnect() gave up after %.2f s', $t));

		# The object is reusable once pointed at a working server.
		my $srv = Test::QMTPServer->new(script => \&serve_well);
		$d->server('127.0.0.1:' . $srv->port);
		ok($d->reconnect, 'reconnect() to a working server') or diag $d->error;
		envelope($d, "test\n");
		is_deeply($d->send, { map { $_ => 'success: ok' } @RCPTS }, 'send() succeeds after reconnect()')
			or diag $d->error;
		is($d->error, undef, 'error() undef');
		close $filler;
		close $l;
	};
}

# ---------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------

cmp_ok($FAULT_SENDS, '>=', 4, "fault sends checked ($FAULT_SENDS)");
is($FALSE_SUCCESS, 0, 'never a success for a recipient no K covers, across all timeout cases');

SKIP: {
	skip 'no /proc/PID/fd on this system', 1 unless defined $FDS_BEFORE;
	is(fd_count(), $FDS_BEFORE, 'no descriptor leaked over the whole fault series');
}

alarm 0;
done_testing();

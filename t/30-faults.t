#!perl
# Faults a real server will not produce on demand: connections closed after
# some answers, cut-off and malformed answers, unrequested bytes, too many
# answers, idle close, session limit, a reader that hangs up mid-package,
# and connection failures. Every case asserts the documented behaviour:
# send() never dies because of the server, an answer that was not received
# is a "deferral: no response received: ..." (received 0), a recipient is
# never a success unless a K covers it, and the object stays usable.
#
# Timeouts are in t/31-faults-timeouts.t, message files in t/32-faults-files.t.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use IO::Socket::INET;
use Socket qw(SOL_SOCKET SO_LINGER);
use Time::HiRes ();

use Net::QMTP;
use lib 't/lib';
use Test::QMTPServer;
use Test::QMTPFaults;

# A hang must fail the test, not block CI: the default action of SIGALRM
# terminates the process whatever the code under test is doing.
$SIG{ALRM} = 'DEFAULT';
alarm 300;


my $FDS_BEFORE = fd_count();

# A file the test creates once send() has returned: lets a fault script
# stall exactly as long as the client needs, then go on.
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
	my $q = Net::QMTP->new('127.0.0.1:' . $srv->port, Timeout => 5, %opt)
		or die "cannot connect to the test server: $@";
	envelope($q, "test\n");
	return $q;
}

# After the fault: the same object sends the next message, transparently
# reconnecting when the fault closed the connection, onto connection $conn.
sub reuse_ok {
	my ($q, $srv, $conn, $name) = @_;
	envelope($q, "next after $name\n");
	my $res = eval { $q->send };
	is($@, '', "$name: next send() does not die");
	ok($res, "$name: next send() succeeds") or diag 'error: ' . ($q->error // 'undef');
	is($q->error, undef, "$name: error() undef after the next send()");
	is_deeply($res, { map { $_ => 'success: ok' } @RCPTS }, "$name: next send() all success");
	my @p = $srv->packages($conn);
	ok(@p && $p[-1]{message} eq "next after $name\n",
		"$name: next package arrived on connection $conn");
}

# ---------------------------------------------------------------------
# The server closes after k of 3 answers
# ---------------------------------------------------------------------

# When answers were lost after the package was written, send() still
# returns its hash, and error() says what happened: the reason the
# deferrals give.
sub lost_ok {
	my ($q) = @_;
	my ($lost) = grep { !$_->{received} } @{ $q->responses };
	my $why = $lost ? $lost->{text} =~ s/\Ano response received: //r : undef;
	is($q->error, $why, 'error() says what happened to the answers');
}

case 'server closes after 0 of 3 answers' => sub {
	my $srv = fault_server(sub { $_[0]->read_package });
	my $q = client($srv);
	my ($res, $t, $died) = timed_send($q);
	is($died, '', 'send() does not die');
	ok($res, 'send() returns the results (the package was written in full)');
	lost_ok($q);
	my $why = qr/\Ano response received: .*closed by the server/;
	results_ok($q, $res, [ map { ['Z', $why, 0, 0] } 1 .. 3 ], 'closed after 0');
	no_false_success($q, $res, [], 'closed after 0');
	reuse_ok($q, $srv, 1, 'closed after 0');
};

case 'server closes at once after 1 of 3 answers' => sub {
	my $srv = fault_server(sub { $_[0]->read_package and $_[0]->respond('Kfirst') });
	my $q = client($srv);
	my ($res, $t, $died) = timed_send($q);
	is($died, '', 'send() does not die');
	ok($res, 'send() returns the results');
	my $why = qr/\Ano response received: .*closed by the server/;
	results_ok($q, $res, [ ['K', 'first', 1, 0], ['Z', $why, 0, 0], ['Z', $why, 0, 0] ], 'closed after 1');
	no_false_success($q, $res, [0], 'closed after 1');
	reuse_ok($q, $srv, 1, 'closed after 1');
};

case 'server closes at once after 2 of 3 answers' => sub {
	my $srv = fault_server(sub { $_[0]->read_package and $_[0]->respond('Kfirst', 'Dsecond') });
	my $q = client($srv);
	my ($res, $t, $died) = timed_send($q);
	is($died, '', 'send() does not die');
	ok($res, 'send() returns the results');
	my $why = qr/\Ano response received: .*closed by the server/;
	results_ok($q, $res, [ ['K', 'first', 1, 0], ['D', 'second', 1, 0], ['Z', $why, 0, 0] ],
		'closed after 2');
	no_false_success($q, $res, [0], 'closed after 2');
	reuse_ok($q, $srv, 1, 'closed after 2');
};

case 'spec server: 1 answer, client half-closes, the rest follow' => sub {
	my $srv = fault_server(sub {
		my ($c) = @_;
		$c->read_package or return;
		$c->respond('Kfirst');
		# The client must half-close after HalfCloseAfter (0.5 s).
		my $eof = $c->wait_eof(10);
		$c->respond($eof ? ('Zsecond after half-close', 'Dthird after half-close')
		                 : ('Zno half-close', 'Dno half-close'));
	});
	my $q = client($srv);
	my ($res, $t, $died) = timed_send($q);
	is($died, '', 'send() does not die');
	ok($res, 'send() returns the results');
	is($q->error, undef, 'error() undef');
	ok($srv->client_closed(0), 'the server saw the client half-close');
	results_ok($q, $res, [
		['K', 'first', 1, 0],
		['Z', 'second after half-close', 1, 0],
		['D', 'third after half-close', 1, 0],
	], 'spec server after half-close');
	no_false_success($q, $res, [0], 'spec server after half-close');
	cmp_ok($t, '>=', 0.4, 'the client waited about HalfCloseAfter before half-closing');
	reuse_ok($q, $srv, 1, 'spec server after half-close');
};

case 'once-per-package server: 1 answer, waits for EOF, closes' => sub {
	my $srv = Test::QMTPServer->new(script => sub {
		my ($c, $n) = @_;
		# Every connection answers once per package, as mailfront does.
		while ($c->read_package) {
			$c->respond("Kqueued $n");
			last if $c->wait_eof(10);
		}
	});
	my $q = client($srv, HalfCloseAfter => 1);
	my ($res, $t, $died) = timed_send($q);
	is($died, '', 'send() does not die');
	ok($res, 'send() returns the results');
	is($q->error, undef, 'error() undef');
	results_ok($q, $res, [ map { ['K', 'queued 0', 1, 1] } 1 .. 3 ], 'once per package');
	no_false_success($q, $res, [0, 1, 2], 'once per package');
	cmp_ok($t, '>=', 0.9, 'first message: waited HalfCloseAfter (1 s) before half-closing');

	# Known now as a once-per-package server: the next message skips the wait.
	$srv->wait_done(0, 10);
	envelope($q, "second\n");
	($res, $t, $died) = timed_send($q);
	is($died, '', 'second send() does not die');
	ok($res, 'second send() succeeds, on a new connection') or diag $q->error;
	results_ok($q, $res, [ map { ['K', 'queued 1', 1, 1] } 1 .. 3 ], 'once per package, second');
	cmp_ok($t, '<', 0.75, 'second message did not wait HalfCloseAfter again');
	my @p = $srv->packages(1);
	is(scalar @p, 1, 'second message on connection 1');
};

case 'server answers 2 of 3, waits for the half-close, closes' => sub {
	my $srv = fault_server(sub {
		my ($c) = @_;
		$c->read_package or return;
		$c->respond('Kfirst', 'Ksecond');
		$c->wait_eof(10);
	});
	my $q = client($srv);
	my ($res, $t, $died) = timed_send($q);
	is($died, '', 'send() does not die');
	ok($res, 'send() returns the results');
	ok($srv->client_closed(0), 'the client half-closed');
	my $why = qr/\Ano response received: .*closed by the server/;
	results_ok($q, $res, [ ['K', 'first', 1, 0], ['K', 'second', 1, 0], ['Z', $why, 0, 0] ],
		'2 of 3 then close');
	no_false_success($q, $res, [0, 1], '2 of 3 then close');
	reuse_ok($q, $srv, 1, '2 of 3 then close');
};

# One full answer and the start of a second: the server answers per
# recipient, so its first answer must not stand for the others, whether
# the cut-off second answer came before or after the client's half-close.
for my $when ('before', 'after') {
	my $name = "1 answer and half of the 2nd ($when the half-close), then close";
	case $name => sub {
		my $srv = fault_server(sub {
			my ($c) = @_;
			$c->read_package or return;
			if ($when eq 'before') {
				$c->write('3:Kok,5:Kok');
				$c->wait_eof(10);
			} else {
				$c->write('3:Kok,');
				$c->wait_eof(10);
				$c->write('5:Kok');
			}
		});
		my $q = client($srv);
		my ($res, $t, $died) = timed_send($q);
		is($died, '', 'send() does not die');
		ok($res, 'send() returns the results') or diag $q->error;
		ok($srv->client_closed(0), 'the client half-closed');
		my $why = qr/\Ano response received: connection closed by the server.*(?:middle|cut off|incomplete)/;
		results_ok($q, $res, [ ['K', 'ok', 1, 0], ['Z', $why, 0, 0], ['Z', $why, 0, 0] ], $name);
		no_false_success($q, $res, [0], $name);
		reuse_ok($q, $srv, 1, $name);
	};
}

# ---------------------------------------------------------------------
# Reset connections
# ---------------------------------------------------------------------

# Closes with SO_LINGER 0: the peer gets a RST, not a FIN.
sub reset_conn {
	my ($c) = @_;
	setsockopt($c->socket, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0)) or die "SO_LINGER: $!";
	$c->close;
}

case 'server resets the connection after reading the package' => sub {
	my $srv = fault_server(sub { $_[0]->read_package and reset_conn($_[0]) });
	my $q = client($srv);
	my ($res, $t, $died) = timed_send($q);
	is($died, '', 'send() does not die');
	ok($res, 'send() returns the results (the package was written in full)') or diag $q->error;
	lost_ok($q);
	my $why = qr/\Ano response received: .*(?:reset|failed|lost|closed)/i;
	results_ok($q, $res, [ map { ['Z', $why, 0, 0] } 1 .. 3 ], 'reset after the package');
	note 'text: ' . ($q->responses->[0]{text} // 'undef');
	no_false_success($q, $res, [], 'reset after the package');
	reuse_ok($q, $srv, 1, 'reset after the package');
};

case 'server resets the idle connection' => sub {
	local $SIG{PIPE} = 'DEFAULT';    # a SIGPIPE would kill the test
	my $srv = Test::QMTPServer->new(script => sub {
		my ($c, $n) = @_;
		return serve_well($c) if $n > 0;
		$c->read_package or return;
		$c->answer_all('K', 'ok 0');
		reset_conn($c);
	});
	my $q = client($srv);
	is_deeply($q->send, { map { $_ => 'success: ok 0' } @RCPTS }, 'first message on connection 0')
		or diag $q->error;
	ok($srv->wait_done(0, 5), 'the server reset connection 0');
	Time::HiRes::sleep(0.2);
	reuse_ok($q, $srv, 1, 'idle reset');
};

# ---------------------------------------------------------------------
# Cut-off and malformed answers
# ---------------------------------------------------------------------

# Each: [name, bytes the server writes, regexp for the deferral text,
#        answers before the bad one (their K texts), extra client options]
# The texts are matched on what they must say, not on exact wording.
my $MID = qr/connection closed by the server.*(?:middle|cut off|incomplete)/;
my @MALFORMED = (
	['close in the middle of a response', '5:Kok', $MID],
	['close in the middle of the second response', '3:Kok,5:Kok', $MID, ['ok']],
	['garbage "hello"', 'hello', qr/protocol violation.*malformed/],
	['status byte not K, Z or D', '3:Xno,', qr/protocol violation.*K, Z or D/],
	['empty response 0:,', '0:,', qr/protocol violation.*empty/],
	['length of 10 digits', '1234567890:Kok,', qr/protocol violation.*malformed/],
	['length with a leading zero', '03:Kok,', qr/protocol violation.*malformed/],
	['missing comma', '3:Kokx', qr/protocol violation.*terminated by ','/],
	['response longer than MaxResponse', '16:K' . ('a' x 15) . ',17:K' . ('b' x 16) . ',',
		qr/protocol violation.*longer than the limit/, ['a' x 15], [MaxResponse => 16]],
	['negative length', '-3:Kok,', qr/protocol violation.*malformed/],
	['space before the length', ' 3:Kok,', qr/protocol violation.*malformed/],
);

for my $m (@MALFORMED) {
	my ($name, $bytes, $why, $before, $opt) = @$m;
	$before ||= [];
	case $name => sub {
		my $srv = fault_server(sub {
			my ($c) = @_;
			$c->read_package or return;
			$c->write($bytes);
			# Close at once for the cut-off cases; otherwise wait for the
			# client to give up on the connection.
			$c->wait_eof(10) unless $name =~ /^close/;
		});
		my $q = client($srv, @{ $opt || [] });
		my ($res, $t, $died) = timed_send($q);
		is($died, '', 'send() does not die');
		ok($res, 'send() returns the results') or diag $q->error;
		lost_ok($q);
		my @want = map { ['K', $_, 1, 0] } @$before;
		push @want, ['Z', qr/\Ano response received: .*$why/, 0, 0] while @want < 3;
		results_ok($q, $res, \@want, $name);
		no_false_success($q, $res, [0 .. $#$before], $name);
		ok($srv->wait_closed(0, 5), 'the client closed the connection') unless $name =~ /^close/;
		cmp_ok($t, '<', 3, 'no waiting for a timeout');
		reuse_ok($q, $srv, 1, $name);
	};
}

# ---------------------------------------------------------------------
# Bytes the client did not ask for
# ---------------------------------------------------------------------

sub big_size {
	my ($min) = @_;
	# Larger than anything the kernel can buffer (client send buffer
	# maximum plus a margin), so the client is still writing.
	my $wmem = 4 * 1024 * 1024;
	if (open my $fh, '<', '/proc/sys/net/ipv4/tcp_wmem') {
		my @v = split ' ', scalar <$fh>;
		$wmem = $v[2] if @v == 3 && $v[2] =~ /^\d+\z/;
	}
	my $size = $wmem + 2 * 1024 * 1024;
	return $size > $min ? $size : $min;
}

case 'server writes an answer while the package is still being written' => sub {
	my $size = big_size(20 * 1024 * 1024);
	my $flag = tempdir(CLEANUP => 1);
	my $srv = fault_server(sub {
		my ($c) = @_;
		$c->read_bytes(1);          # the package has begun ...
		$c->write('3:Kok,');        # ... and is far from complete:
		# nothing more is read until send() has returned, so the package
		# cannot be completed whenever the 6 bytes reach the client (a
		# loopback segment can be dropped and come again 200 ms later).
		wait_flag($c, $flag);
		$c->read_until_eof;
	}, rcvbuf => 4096);
	my $q = client($srv);
	$q->new_message;
	$q->message('x' x $size);
	my ($res, $t, $died) = timed_send($q);
	raise_flag($flag);
	is($died, '', 'send() does not die');
	is($res, undef, 'send() returns undef: the package was not written in full');
	like($q->error // '', qr/protocol violation.*before a package was complete/,
		'error() says the server answered too early');
	note 'error: ' . ($q->error // 'undef');
	my $why = qr/\Ano response received: /;
	results_ok($q, $res, [ map { ['Z', $why, 0, 0] } 1 .. 3 ], 'answer too early');
	no_false_success($q, $res, [], 'answer too early');
	ok($srv->wait_closed(0, 10), 'the client closed the connection');
	is(scalar(my @p = $srv->packages(0)), 0, 'the server got no complete package');
	reuse_ok($q, $srv, 1, 'answer too early');
};

case 'server writes unrequested bytes on an idle connection' => sub {
	my $dir = tempdir(CLEANUP => 1);
	my $srv = fault_server(sub {
		my ($c) = @_;
		$c->write('3:Kok,');
		open my $fh, '>', "$dir/wrote";
		close $fh;
		$c->wait_eof(10);
	});
	my $q = client($srv);
	my $deadline = Time::HiRes::time() + 10;
	Time::HiRes::sleep(0.02) while !-e "$dir/wrote" && Time::HiRes::time() < $deadline;
	ok(-e "$dir/wrote", 'the server wrote before any package');
	Time::HiRes::sleep(0.3);    # even a segment sent again after 200 ms is in
	my ($res, $t, $died) = timed_send($q);
	is($died, '', 'send() does not die');
	ok($res, 'send() succeeds on a new connection') or diag $q->error;
	is($q->error, undef, 'error() undef');
	results_ok($q, $res, [ map { ['K', 'ok', 1, 0] } 1 .. 3 ], 'unrequested idle bytes');
	is(scalar(my @p0 = $srv->packages(0)), 0, 'nothing was sent on the connection with stray bytes');
	is(scalar(my @p1 = $srv->packages(1)), 1, 'the package went on connection 1');
};

case 'more answers than recipients, in one write' => sub {
	my $srv = fault_server(sub {
		my ($c) = @_;
		$c->read_package or return;
		$c->respond('K1', 'Z2', 'D3', 'Kextra');
		$c->wait_eof(10);
	});
	my $q = client($srv);
	my ($res, $t, $died) = timed_send($q);
	is($died, '', 'send() does not die');
	ok($res, 'send() returns the results') or diag $q->error;
	like($q->error // '', qr/answers did not match its packages: more answers than recipients/,
		'error() says the answers did not match');
	# Any of the answers could be the one out of place: none is trusted.
	my $why = qr/\Ano response received: the server's answers did not match its packages/;
	results_ok($q, $res, [ map { ['Z', $why, 0, 0] } 1 .. 3 ], 'extra answers');
	no_false_success($q, $res, [], 'extra answers');
	ok($srv->wait_closed(0, 5), 'the client closed the connection after the extra answer');
	reuse_ok($q, $srv, 1, 'extra answers');
};

case 'an extra answer arriving after the last one' => sub {
	my $srv = fault_server(sub {
		my ($c) = @_;
		$c->read_package or return;
		$c->respond('K1', 'Z2', 'D3');
		$c->sleep(0.2);
		$c->respond('Kextra');
		$c->wait_eof(10);
	});
	my $q = client($srv);
	my ($res, $t, $died) = timed_send($q);
	is($died, '', 'send() does not die');
	ok($res, 'send() returns the results') or diag $q->error;
	results_ok($q, $res, [ ['K', '1', 1, 0], ['Z', '2', 1, 0], ['D', '3', 1, 0] ], 'late extra answer');
	no_false_success($q, $res, [0], 'late extra answer');
	Time::HiRes::sleep(0.5);
	reuse_ok($q, $srv, 1, 'late extra answer');
	is(scalar(my @p = $srv->packages(0)), 1, 'connection 0 carried only the first package');
};

# ---------------------------------------------------------------------
# Connection lifecycle
# ---------------------------------------------------------------------

case 'server closes the connection while idle' => sub {
	local $SIG{PIPE} = 'DEFAULT';    # a SIGPIPE would kill the test
	my $srv = Test::QMTPServer->new(script => sub {
		my ($c, $n) = @_;
		$c->read_package or return;
		$c->answer_all('K', "ok $n");
		serve_well($c) if $n > 0;     # connection 0 closes after one package
	});
	my $q = client($srv);
	my $res = $q->send;
	is_deeply($res, { map { $_ => 'success: ok 0' } @RCPTS }, 'first message on connection 0');
	ok($srv->wait_done(0, 5), 'the server closed connection 0');
	Time::HiRes::sleep(0.2);
	envelope($q, "second\n");
	my ($res2, $t, $died) = timed_send($q);
	is($died, '', 'send() does not die');
	is_deeply($res2, { map { $_ => 'success: ok 1' } @RCPTS }, 'second message succeeds')
		or diag $q->error;
	is($q->error, undef, 'error() undef');
	my @p = $srv->packages(1);
	is(scalar @p, 1, 'one package on connection 1');
	is($p[0] && $p[0]{message}, "second\n", 'the second message went on a new connection');
	is(scalar(my @p0 = $srv->packages(0)), 1, 'connection 0 carried only the first');
};

case 'SessionLimit: a connection past it is replaced' => sub {
	my $srv = Test::QMTPServer->new(script => sub {
		my ($c, $n) = @_;
		while ($c->read_package) {
			$c->answer_all('K', "ok $n") or last;
		}
	});
	my $q = client($srv, SessionLimit => 0.3);
	is_deeply($q->send, { map { $_ => 'success: ok 0' } @RCPTS }, 'first message on connection 0')
		or diag $q->error;
	Time::HiRes::sleep(0.5);
	envelope($q, "second\n");
	my $res = $q->send;
	is_deeply($res, { map { $_ => 'success: ok 1' } @RCPTS }, 'second message on a new connection')
		or diag $q->error;
	is($q->error, undef, 'error() undef');
	is(scalar(my @p0 = $srv->packages(0)), 1, 'connection 0 carried one package');
	my @p1 = $srv->packages(1);
	is($p1[0] && $p1[0]{message}, "second\n", 'connection 1 carried the second');
};

case 'server reads part of a large message and closes (no SIGPIPE)' => sub {
	local $SIG{PIPE} = 'DEFAULT';    # a SIGPIPE would kill the test
	my $size = big_size(5 * 1024 * 1024);
	my $srv = fault_server(sub { $_[0]->read_bytes(65536) }, rcvbuf => 4096);
	my $q = client($srv);
	$q->new_message;
	$q->message('y' x $size);
	my ($res, $t, $died) = timed_send($q);
	is($died, '', 'send() does not die');
	is($res, undef, 'send() returns undef: the package could not be written in full');
	like($q->error // '', qr/connection (?:lost|closed|failed)/, 'error() says the connection was lost')
		or diag 'error: ' . ($q->error // 'undef');
	note 'error: ' . ($q->error // 'undef');
	my $r = $q->responses;
	is(scalar @$r, 3, 'responses() still has one entry per recipient');
	ok(!grep({ $_->{code} ne 'Z' || $_->{received} } @$r), 'all made-up deferrals');
	no_false_success($q, $res, [], 'hang-up mid-package');
	cmp_ok($t, '<', 4, 'no waiting for a timeout');
	reuse_ok($q, $srv, 1, 'hang-up mid-package');
};

case 'after a fault and disconnect(), send() does not reconnect by itself' => sub {
	my $srv = fault_server(sub { $_[0]->read_package });
	my $q = client($srv);
	my $res = $q->send;
	ok($res && $res->{'a@x'} =~ /^deferral: no response received: /, 'the fault made deferrals');
	no_false_success($q, $res, [], 'fault before disconnect');
	my @warnings;
	{
		local $SIG{__WARN__} = sub { push @warnings, @_ };
		eval { $q->disconnect };
	}
	is($@, '', 'disconnect() does not die');
	envelope($q, "after disconnect\n");
	is(eval { $q->send }, undef, 'send() after disconnect() returns undef');
	like($q->error // '', qr/not connected/, 'error() says not connected');
	ok($srv->wait_done(0, 5), 'fault connection over');
	Time::HiRes::sleep(0.1);
	is($srv->connections, 1, 'no new connection was opened');
	ok($q->reconnect, 'reconnect()') or diag $q->error;
	reuse_ok($q, $srv, 1, 'disconnect then reconnect');
};

# ---------------------------------------------------------------------
# Connection failures
# ---------------------------------------------------------------------

sub unused_port {
	my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp', Listen => 1)
		or die "cannot bind: $@";
	my $port = $s->sockport;
	close $s;
	return $port;
}

case 'connection refused' => sub {
	my $port = unused_port();
	my $q = Net::QMTP->new("127.0.0.1:$port", Timeout => 5);
	my $err = $@;
	is($q, undef, 'new() returns undef');
	like($err, qr/127\.0\.0\.1/, '$@ names the address');
	like($err, qr/\b$port\b/, '$@ names the port');
	like($err, qr/refused/i, '$@ says refused');

	my $d = Net::QMTP->new("127.0.0.1:$port", Timeout => 5, DeferConnect => 1);
	ok($d, 'DeferConnect: new() returns an object');
	is(eval { $d->reconnect }, undef, 'reconnect() returns undef');
	is($@, '', 'reconnect() does not die');
	like($d->error // '', qr/127\.0\.0\.1.*refused/i, 'error() says refused');
	envelope($d, "test\n");
	is($d->send, undef, 'send() after the failed reconnect returns undef');
	like($d->error // '', qr/not connected/, 'error() says not connected');

	# The object is reusable once pointed at a working server.
	my $srv = Test::QMTPServer->new(script => \&serve_well);
	$d->server('127.0.0.1:' . $srv->port);
	ok($d->reconnect, 'reconnect() to a working server') or diag $d->error;
	is($d->error, undef, 'error() undef after reconnect()');
	is_deeply($d->send, { map { $_ => 'success: ok' } @RCPTS }, 'send() succeeds after reconnect()')
		or diag $d->error;
};

# ---------------------------------------------------------------------
# Summary over every fault case above
# ---------------------------------------------------------------------

cmp_ok($FAULT_SENDS, '>=', 20, "fault sends checked ($FAULT_SENDS)");
is($FALSE_SUCCESS, 0, 'never a success for a recipient no K covers, across all fault cases');

SKIP: {
	skip 'no /proc/PID/fd on this system', 1 unless defined $FDS_BEFORE;
	is(fd_count(), $FDS_BEFORE, 'no descriptor leaked over the whole fault series');
}

alarm 0;
done_testing();

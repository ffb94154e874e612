#!perl
# Self-test of the test helpers t/lib/Test/QMTPServer.pm and
# t/lib/Test/Mailfront.pm, using plain sockets only (no Net::QMTP), so a
# failure here points at the helpers, not at the module under test.

use strict;
use warnings;

use Test::More;
use IO::Socket::INET;
use Time::HiRes ();

use lib 't/lib';
use Test::QMTPServer;
use Test::Mailfront;

# Nothing in here may hang the test suite.
$SIG{ALRM} = sub { die "selftest timed out\n" };
alarm 120;

my $PACKAGE = "6:\ntest\n,3:s\@x,12:3:a\@x,3:b\@x,,";

sub client {
	my ($port) = @_;
	my $s = IO::Socket::INET->new(
		PeerAddr => '127.0.0.1',
		PeerPort => $port,
		Proto    => 'tcp',
		Timeout  => 5,
	) or die "connect 127.0.0.1:$port: $@";
	binmode $s;
	return $s;
}

sub send_all {
	my ($s, $bytes) = @_;
	my $off = 0;
	while ($off < length $bytes) {
		my $w = syswrite($s, $bytes, length($bytes) - $off, $off);
		die "write: $!" unless defined $w;
		$off += $w;
	}
}

# Read exactly $n bytes (fewer on EOF or after $timeout seconds).
sub recv_n {
	my ($s, $n, $timeout) = @_;
	$timeout = 10 unless defined $timeout;
	my $deadline = Time::HiRes::time() + $timeout;
	my $buf = '';
	while (length($buf) < $n) {
		my $left = $deadline - Time::HiRes::time();
		last if $left <= 0;
		my $rin = '';
		vec($rin, fileno($s), 1) = 1;
		next unless select(my $rout = $rin, undef, undef, $left) > 0;
		my $got = sysread($s, $buf, $n - length($buf), length $buf);
		last unless $got;
	}
	return $buf;
}

# ---------------------------------------------------------------------
# Test::QMTPServer
# ---------------------------------------------------------------------
{
	is(Test::QMTPServer::netstring('Kok'), '3:Kok,', 'netstring helper');

	my $srv = Test::QMTPServer->new(sub {
		my ($conn, $n) = @_;
		my $pkg = $conn->read_package or return;
		$conn->answer_all('K', 'ok');
		$conn->wait_eof(10);
	});
	ok($srv->port > 0, 'server has a port');
	is($srv->host, '127.0.0.1', 'server host');
	is($srv->connections, 0, 'no connections yet');

	my $s = client($srv->port);
	send_all($s, $PACKAGE);
	is(recv_n($s, 12), '3:Kok,3:Kok,', 'one K response per recipient');
	ok($srv->wait_connections(1, 5), 'wait_connections(1)');
	is($srv->connections, 1, 'one connection accepted');
	is($srv->received(0), $PACKAGE, 'received(0) holds the exact bytes sent');
	is($srv->received(1), '', 'received() of an unknown connection is empty');

	my @p = $srv->packages(0);
	is(scalar @p, 1, 'one package parsed');
	is($p[0]{enc}, "\n", 'encoding byte');
	is($p[0]{message}, "test\n", 'message');
	is($p[0]{sender}, 's@x', 'sender');
	is_deeply($p[0]{recipients}, ['a@x', 'b@x'], 'recipients');
	is($p[0]{raw}, $PACKAGE, 'raw package bytes');

	ok(!$srv->client_closed(0), 'client not closed yet');
	close $s;
	ok($srv->wait_closed(0, 5), 'server saw the client close');
	ok($srv->client_closed(0), 'client_closed(0)');
	ok($srv->wait_done(0, 5), 'script finished');
	is($srv->script_error(0), undef, 'script did not die');

	# Only complete packages are reported; a pipelined second package
	# is read without reading past its end.
	my $srv2 = Test::QMTPServer->new(
		script => sub {
			my ($conn) = @_;
			$conn->read_package or return;
			$conn->respond('Kone');
			$conn->read_package or return;
			$conn->respond('Ztwo', 'Dthree');
			my $rest = $conn->read_bytes(3);
			$conn->write_slowly("4:Kend,", 0.001) if $rest eq 'xyz';
		},
		max_connections => 1,
	);
	my $pkg1 = "2:\nA,0:,6:3:a\@x,,";
	my $pkg2 = "2:\rB,1:s,12:3:a\@x,3:b\@x,,";
	my $s2 = client($srv2->port);
	send_all($s2, $pkg1 . $pkg2 . 'xyz');
	is(recv_n($s2, 7 + 7 + 9 + 7), '4:Kone,4:Ztwo,6:Dthree,4:Kend,', 'pipelined packages answered');
	is($srv2->received(0), $pkg1 . $pkg2 . 'xyz', 'all bytes recorded');
	my @p2 = $srv2->packages(0);
	is(scalar @p2, 2, 'two complete packages (trailing garbage ignored)');
	is($p2[0]{sender}, '', 'null sender');
	is($p2[1]{enc}, "\r", 'CR encoding byte');
	is_deeply($p2[1]{recipients}, ['a@x', 'b@x'], 'second package recipients');
	is(recv_n($s2, 1, 5), '', 'server closed the connection after the script');
	close $s2;
	ok($srv2->wait_done(0, 5), 'second server script done');
	# max_connections => 1: the listener is gone now.
	my $refused;
	for (1 .. 50) {
		my $t = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $srv2->port,
			Proto => 'tcp', Timeout => 2);
		if (!$t) { $refused = 1; last }
		close $t;
		Time::HiRes::sleep(0.05);
	}
	ok($refused, 'connections refused after max_connections');

	my @pids = ($srv->pid, $srv2->pid);
	$srv->stop;
	$srv2->stop;
	ok(!kill(0, $_), "server child $_ is gone") for @pids;
	is($srv->received(0), $PACKAGE, 'received() still works after stop');
}

# ---------------------------------------------------------------------
# Test::Mailfront
# ---------------------------------------------------------------------
SKIP: {
	if (!Test::Mailfront->available) {
		my $why = 'missing ' . join(', ', Test::Mailfront->missing);
		if ($ENV{NET_QMTP_REQUIRE_MAILFRONT}) {
			fail("mailfront/tcpserver required (NET_QMTP_REQUIRE_MAILFRONT): $why");
			last SKIP;
		}
		skip "mailfront and tcpserver (Debian: mailfront, ucspi-tcp) not installed: $why", 1;
	}

	my $mf = Test::Mailfront->start;
	ok($mf->port > 0, 'mailfront port');
	is($mf->host, '127.0.0.1', 'mailfront host');

	my $s = client($mf->port);
	send_all($s, $PACKAGE);
	is(recv_n($s, 28), '24:K2.6.0 Message accepted.,', 'mailfront answers once per package');
	ok($mf->wait_queued(1, 10), 'message queued');
	my @q = $mf->queued;
	is(scalar @q, 1, 'exactly one queued message');
	is($q[0]{sender}, 's@x', 'queued sender');
	is_deeply($q[0]{recipients}, ['a@x', 'b@x'], 'queued recipients');
	is($q[0]{message}, "test\n", 'queued message');
	ok(-f $q[0]{file}, 'queued file exists');

	# A second message on the same connection, then ordering.
	send_all($s, "7:\nsecond,3:t\@y,6:3:c\@y,,");
	is(recv_n($s, 28), '24:K2.6.0 Message accepted.,', 'second message accepted');
	ok($mf->wait_queued(2, 10), 'two messages queued');
	@q = $mf->queued;
	is_deeply([map { $_->{message} } @q], ["test\n", 'second'], 'queued in order');
	close $s;

	is($mf->clear, 2, 'clear removed two files');
	is(scalar(my @none = $mf->queued), 0, 'queue empty after clear');
	like($mf->log, qr/recipient <a\@x>/, 'log has mailfront output');

	my $pid = $mf->pid;
	$mf->stop;
	ok(!kill(0, $pid), 'mailfront watchdog is gone');

	# DATABYTES limit through env and the counters plugin.
	my $lim = Test::Mailfront->start(plugins => ['counters', 'accept'], env => { DATABYTES => 100 });
	my $big = "\n" . ('x' x 200) . "\n";
	my $s3 = client($lim->port);
	send_all($s3, Test::QMTPServer::netstring($big) . '3:s@x,6:3:a@x,,');
	like(recv_n($s3, 4), qr/^\d+:D/, 'over-size message permanently rejected');
	close $s3;

	# The echo backend.
	my $echo = Test::Mailfront->start(backend => 'echo');
	my $s4 = client($echo->port);
	send_all($s4, $PACKAGE);
	is(recv_n($s4, 22), '18:KReceived 5 bytes.,', 'echo backend');
	close $s4;
	$lim->stop;
	$echo->stop;
}

alarm 0;
done_testing();

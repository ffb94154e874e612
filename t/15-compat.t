#!perl
# What libnet and Net::QMTP 0.06 users expect of the library: Timeout
# bounds connecting too (as Net::SMTP's does); Debug says how answers were
# matched to recipients (waiting, half-closing, one answer for several
# recipients) and why the client reconnects; and 0.06 scripts that run
# new() under local $/, call methods on the class, push undef onto
# recipient()'s list, read $qmtp->{SOCKET} or call DESTROY themselves get
# what 0.06 gave, or a clear error at their own line.

use strict;
use warnings;

use Test::More;
use IO::Socket::INET;
use Time::HiRes ();

use Net::QMTP;
use lib 't/lib';
use Test::QMTPServer;
use Test::QMTPFaults;

# A hang must fail the test, not block CI.
$SIG{ALRM} = 'DEFAULT';
alarm 300;

my $FILE = __FILE__;
my $AT   = qr/ at \Q$FILE\E line \d+\.?\n\z/;

sub client {
	my ($srv, %opt) = @_;
	local $SIG{__WARN__} = sub { };    # Debug's lines of new()
	my $q = Net::QMTP->new('127.0.0.1:' . $srv->port, Timeout => 5, %opt)
		or die "cannot connect to the test server: $@";
	return $q;
}

# Debug lines of a call, without the object's name in front.
sub debug_of {
	my ($code) = @_;
	my @lines;
	local $SIG{__WARN__} = sub { push @lines, $_[0] };
	my @r = $code->();
	s/\ANet::QMTP=HASH\(0x[0-9a-f]+\) // for @lines;
	return (join('', @lines), @r);
}

# A server that answers once per message, as mailfront does.
sub per_message_server {
	return Test::QMTPServer->new(script => sub {
		my ($c) = @_;
		while ($c->read_package) {
			$c->respond('Kone for all') or last;
		}
	});
}

# ---------------------------------------------------------------------
# Timeout bounds connecting when ConnectTimeout is not given
# ---------------------------------------------------------------------

case 'Timeout bounds a connect that hangs' => sub {
	# A listener that never accepts, its backlog full: further connects
	# hang (the kernel drops their SYNs) until the client gives up.
	my $l = IO::Socket::INET->new(Listen => 0, LocalAddr => '127.0.0.1', LocalPort => 0) or die $!;
	my @fill = map {
		IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $l->sockport, Blocking => 0)
	} 1 .. 8;
	SKIP: {
		my $probe = Net::QMTP->new('127.0.0.1', Port => $l->sockport, ConnectTimeout => 0.5);
		skip 'the listen backlog did not hold connects here', 3 if $probe;
		my $t0 = Time::HiRes::time();
		my $q = eval {
			local $SIG{ALRM} = sub { die "still connecting after 20 s\n" };
			alarm 20;
			my $o = Net::QMTP->new('127.0.0.1', Port => $l->sockport, Timeout => 1);
			alarm 0;
			$o;
		};
		my $took = Time::HiRes::time() - $t0;
		alarm 60;
		is($@, '', 'new() returns by itself');
		is($q, undef, '... with undef');
		cmp_ok($took, '<', 5, sprintf('... after about the Timeout of 1 s (%.2f s), not 120 s', $took));
	}
	my $q = Net::QMTP->new('127.0.0.1', Port => 1, Timeout => 3, ConnectTimeout => 7, DeferConnect => 1);
	# ConnectTimeout still wins where given (seen in the connect error).
	ok($q, 'ConnectTimeout and Timeout together are accepted');
};

# ---------------------------------------------------------------------
# Debug: how answers were matched, and why the client reconnects
# ---------------------------------------------------------------------

case 'Debug: a server that answers once per message (found out)' => sub {
	my $srv = per_message_server();
	my $q = client($srv, Debug => 1, HalfCloseAfter => 0.2);
	envelope($q, "Subject: t\n\nhi\n", @RCPTS);
	my ($log, $res) = debug_of(sub { $q->send });
	is_deeply($res, { map { $_ => 'success: one for all' } @RCPTS }, 'the one answer stands for all three');
	like($log, qr/^the first answer of 3 came, then no more: the client waited for a server that answers once per message and closed its side of the connection \(half-close\) after 0\.2 s without more \(HalfCloseAfter\)$/m,
		'Debug says the client waited, then half-closed');
	like($log, qr/^one answer stood for 3 recipients \(the server answers once per message; shown by its hang-up after the half-close\)$/m,
		'Debug says one answer stood for the three recipients, and why');

	envelope($q, "Subject: t\n\nhi\n", @RCPTS[0, 1]);
	($log, $res) = debug_of(sub { $q->send });
	ok($res, 'a second message');
	like($log, qr/^reconnecting: the previous connection was closed \(it was half-closed to see how the server answers\)$/m,
		'Debug says why the client reconnects');
	like($log, qr/closed its side of the connection \(half-close\) at once \(the server was seen answering once per message before\)$/m,
		'... and that it half-closed at once this time');
	like($log, qr/^one answer stood for 2 recipients /m, '... for two recipients');
};

case "Debug: Answers => 'package' declared" => sub {
	my $srv = per_message_server();
	my $q = client($srv, Debug => 1, Answers => 'package');
	envelope($q, "Subject: t\n\nhi\n", @RCPTS);
	my ($log, $res) = debug_of(sub { $q->send });
	ok($res, 'sent');
	like($log, qr/^one answer stood for 3 recipients \(declared: Answers => 'package'\)$/m,
		'Debug says the declaration made one answer stand for three');
	unlike($log, qr/half-close/, '... and nothing was half-closed');
};

case 'Debug: a server that answers per recipient only after the half-close' => sub {
	my $srv = Test::QMTPServer->new(script => sub {
		my ($c, $n) = @_;
		if ($n == 0) {
			$c->read_package or return;
			$c->respond('Kfirst') or return;
			$c->wait_eof(10) or return;
			$c->respond('Ksecond', 'Kthird');
			return;
		}
		serve_well($c);
	});
	my $q = client($srv, Debug => 1, HalfCloseAfter => 0.2);
	envelope($q, "Subject: t\n\nhi\n", @RCPTS);
	my ($log, $res) = debug_of(sub { $q->send });
	is_deeply([ map { $res->{$_} } @RCPTS ], [ 'success: first', 'success: second', 'success: third' ],
		'every answer its own');
	like($log, qr/closed its side of the connection \(half-close\) after 0\.2 s/m, 'Debug says it half-closed');
	like($log, qr/^the server then sent the other answers: it answers once per recipient$/m,
		'... and what the server did then');
};

case 'Debug: a server that answers per recipient at once' => sub {
	my $srv = Test::QMTPServer->new(script => \&serve_well);
	my $q = client($srv, Debug => 1);
	envelope($q, "Subject: t\n\nhi\n", @RCPTS);
	my ($log, $res) = debug_of(sub { $q->send });
	ok($res, 'sent');
	like($log, qr/^the server answers once per recipient \(shown by 3 answers for one message\)$/m,
		'Debug says what the answers showed');
	unlike($log, qr/half-close/, '... without a half-close');
};

case 'Debug: send_many says why jobs go on a new connection' => sub {
	my $srv = per_message_server();
	my $q = client($srv, Debug => 1, HalfCloseAfter => 0.2);
	my @jobs = map { { sender => 's@x', recipients => [ "a$_\@x", "b$_\@x" ], message => "m$_\n" } } 1 .. 2;
	my ($log, $res) = debug_of(sub { $q->send_many(@jobs) });
	is(scalar(grep { $_->{result} } @$res), 2, 'both jobs sent');
	like($log, qr/^sending 1 jobs again on a new connection: they were held back while the connection was half-closed to see how the server answers$/m,
		'Debug says why the second job goes on a new connection');
	like($log, qr/^one answer stood for 2 recipients \(the server answers once per message; /m,
		'... and how the first was answered');
};

# ---------------------------------------------------------------------
# 0.06 compatibility
# ---------------------------------------------------------------------

case 'local $/ around new() warns nothing' => sub {
	my @w;
	local $SIG{__WARN__} = sub { push @w, @_ };
	my $q = do { local $/; Net::QMTP->new('127.0.0.1', DeferConnect => 1) };
	is_deeply(\@w, [], 'no "uninitialized" warning');
	is($q->encoding, "\012", 'the encoding is unix');
	$q = do { local $/ = "\015\012"; Net::QMTP->new('127.0.0.1', DeferConnect => 1) };
	is($q->encoding, "\015", 'dos when $/ is CR LF, as before');
};

case 'methods called on the class croak at the caller' => sub {
	for my $m (qw(send send_many sender recipient server message message_from_file encoding
		new_envelope new_message responses error reconnect disconnect)) {
		my $ok = eval { Net::QMTP->$m('x'); 1 };
		ok(!$ok, "Net::QMTP->$m dies");
		like($@, qr/\ANet::QMTP::$m is an object method: call it on an object from Net::QMTP->new$AT/,
			"... saying so, at the caller's line");
	}
	my $ok = eval { Net::QMTP::sender(undef, 'x'); 1 };
	like($@, qr/\ANet::QMTP::sender is an object method/, 'a function call without an object too');
};

case 'an undefined recipient pushed onto the list: croaks at the caller' => sub {
	my $srv = Test::QMTPServer->new(script => \&serve_well);
	for my $how ('usual', 'Debug', 'file') {
		my $q = client($srv, $how eq 'Debug' ? (Debug => 1) : ());
		local $SIG{__WARN__} = sub { };
		envelope($q, "Subject: t\n\nhi\n", 'a@x');
		ok($q->send, "$how: a first message");    # the connection is then in use
		envelope($q, "Subject: t\n\nhi\n", 'a@x');
		if ($how eq 'file') {
			$q->new_message;
			$q->message_from_file($FILE);
		}
		push @{ $q->recipient }, undef;
		my $ok = eval { $q->send; 1 };
		ok(!$ok, "$how: send dies");
		like($@, qr/\ANet::QMTP::send: Undefined recipient$AT/, "$how: ... at the caller's line");
		$q->new_envelope;
		$q->sender('s@x');
		$q->recipient('b@x');
		ok($q->send, "$how: the object is still usable");
	}
	my $q = client($srv);
	envelope($q, "Subject: t\n\nhi\n", 'a@x');
	my $ok = eval {
		local $SIG{ALRM} = sub { die "my alarm\n" };
		$q->send;
		1;
	};
	ok($ok, 'a send that does not die leaves $@ alone');
	$@ = 'before';
	$q->send;
	is($@, 'before', "... even the caller's \$@");
};

case '$qmtp->{SOCKET}: where the connection goes, as far as is safe' => sub {
	my $srv = Test::QMTPServer->new(script => \&serve_well);
	my $q = client($srv);
	my $s = $q->{SOCKET};
	ok($s, '$qmtp->{SOCKET} is set while connected');
	is($s->peerhost, '127.0.0.1', 'peerhost');
	is($s->peerport, $srv->port, 'peerport');
	ok($s->connected, 'connected');
	is($s->peerpath, undef, 'peerpath: none for TCP');
	my $ok = eval { $s->setsockopt(1, 2, 3); 1 };
	ok(!$ok, 'what would touch the connection dies');
	like($@, qr/\ANet::QMTP: \$qmtp->\{SOCKET\}->setsockopt is not available: the connection belongs to the C core; .*$AT/,
		"... saying so, at the caller's line");
	$q->disconnect;
	is($q->{SOCKET}, undef, 'undef after disconnect(), as in 0.06');
	ok(!$s->connected, 'a copy kept says it is no longer connected');
	is($s->peerhost, undef, '... and has no peer');
	ok($q->reconnect, 'reconnect');
	ok($q->{SOCKET} && $q->{SOCKET}->connected, 'set again');
	my $d = Net::QMTP->new('127.0.0.1', DeferConnect => 1);
	is($d->{SOCKET}, undef, 'undef with DeferConnect');
	undef $q;
	ok(!$s->connected, 'the copy outlives the object harmlessly');
};

case 'an explicit DESTROY, then send: not connected, as in 0.06' => sub {
	my $srv = Test::QMTPServer->new(script => \&serve_well);
	my $q = client($srv);
	envelope($q, "Subject: t\n\nhi\n", 'a@x');
	$q->DESTROY;
	is($q->send, undef, 'send returns undef');
	like($q->error, qr/^not connected/, '... because it is not connected');
	is($q->{SOCKET}, undef, '$qmtp->{SOCKET} is undef');
	ok($q->reconnect, 'reconnect() works');
	ok($q->send, '... and then send()');
	is($srv->connections, 2, 'send did not reconnect by itself');
};

done_testing;

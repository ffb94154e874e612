#!perl
# Email::Sender::Transport::QMTP against the scripted server: every kind of
# outcome maps to the Email::Sender result its POD promises, and never one
# that would make a caller send again to a recipient that has the message;
# faults (refused connection, a stall, a hang-up, a persistent connection
# the server closed) are failures of the right kind, in time; the caller's
# email and envelope are not changed; bad arguments die at the caller's line.

use strict;
use warnings;

alarm 240;

use Test::More;
use Time::HiRes ();
use IO::Socket::INET;

use lib 't/lib';
use Test::EmailSender;
use Test::QMTPServer;

Test::EmailSender->require_or_skip;

use Email::Simple;
use Email::Sender::Simple;
use Email::Sender::Transport::QMTP;
use Email::Sender::Transport::QMTP::Persistent;

my @TO = ('a@x', 'b@x', 'c@x');

sub email { Email::Simple->create(header => [From => 's@x', To => join(', ', @_ ? @_ : @TO),
	Subject => 'test'], body => "one\015\012two\015\012") }

# A server whose every package gets these answers (the same for each).
sub answering {
	my @answers = @_;
	return Test::QMTPServer->new(sub {
		my ($c) = @_;
		while ($c->read_package) { $c->respond(@answers) or last }
	});
}

sub transport {
	my ($srv, %opt) = @_;
	return Email::Sender::Transport::QMTP->new(host => '127.0.0.1', port => $srv->port, timeout => 10, %opt);
}

# send through the transport: (result, exception)
sub try_send {
	my ($t, $email, $env) = @_;
	my $r = eval { $t->send($email || email(), $env || { from => 's@x', to => [@TO] }) };
	return ($r, $@);
}

sub recipients_of { my ($e) = @_; return [ Scalar::Util::blessed($e) ? $e->recipients : () ] }

{
	my $srv = answering('Kok one', 'Kok two', 'Kok three');
	my ($r, $e) = try_send(transport($srv));
	isa_ok($r, 'Email::Sender::Success', 'all accepted');
	ok(!$r->isa('Email::Sender::Success::Partial'), 'all accepted: not a partial success');
	is($r->message, 'ok one; ok two; ok three', "all accepted: the server's texts");
	my ($pkg) = $srv->packages(0);
	is($pkg->{message}, "From: s\@x\nTo: a\@x, b\@x, c\@x\nSubject: test\n"
		. ($pkg->{message} =~ /(Date: [^\n]*\n)/ ? $1 : '') . "\none\ntwo\n", 'the bytes sent: LF line endings')
		or diag explain $pkg;
	is($pkg->{enc}, "\012", 'the unix encoding');
	is($pkg->{sender}, 's@x', 'the envelope sender');
	is_deeply($pkg->{recipients}, \@TO, 'the envelope recipients');
}

{
	my $srv = answering('D5.1.1 no such user');
	my ($r, $e) = try_send(transport($srv), undef, { from => 's@x', to => ['a@x'] });
	isa_ok($e, 'Email::Sender::Failure::Permanent', 'one recipient refused for good');
	is_deeply(recipients_of($e), ['a@x'], 'the failure names it');
	like($e->message, qr/a\@x: failure: 5\.1\.1 no such user/, "with the server's text");
	is($e->code, 'D', 'code is the QMTP answer code');
}

{
	my $srv = answering('Dno', 'Dnope', 'Dno');
	my ($r, $e) = try_send(transport($srv));
	isa_ok($e, 'Email::Sender::Failure::Permanent', 'all refused for good');
	ok(!$e->isa('Email::Sender::Failure::Multi'), 'all refused for good: one failure');
	is_deeply(recipients_of($e), \@TO, 'all refused for good: every recipient');
	like($e->message, qr/refused the message permanently: no; nope\z/, "all refused for good: the texts");
}

{
	my $srv = answering('Zfull', 'Zfull', 'Zfull');
	my ($r, $e) = try_send(transport($srv));
	isa_ok($e, 'Email::Sender::Failure::Temporary', 'all refused for now');
	is_deeply(recipients_of($e), \@TO, 'all refused for now: every recipient');
	like($e->message, qr/for now: full\z/, 'all refused for now: the text once');
	is($e->code, 'Z', 'all refused for now: code Z');
}

{
	my $srv = answering('Dno', 'Zlater', 'Dno');
	my ($r, $e) = try_send(transport($srv));
	isa_ok($e, 'Email::Sender::Failure::Multi', 'refused, some for good, some for now');
	ok(!$e->isa('Email::Sender::Failure::Permanent') && !$e->isa('Email::Sender::Failure::Temporary'),
		'mixed refusals: neither permanent nor temporary as a whole');
	is_deeply([ map { ref } $e->failures ], [ map { "Email::Sender::Failure::$_" } qw(Permanent Temporary Permanent) ],
		'mixed refusals: one failure per recipient, of its kind');
	is_deeply(recipients_of($e), \@TO, 'mixed refusals: every recipient');
}

{
	# Delivered to a: nothing may lead a caller to send to a again.
	my $srv = answering('Kok', 'Dno such user', 'Zover quota');
	my ($r, $e) = try_send(transport($srv));
	isa_ok($e, 'Email::Sender::Failure::Multi', 'partly delivered, default');
	is_deeply(recipients_of($e), ['b@x', 'c@x'], 'partly delivered: the failure names only the others');
	like($e->message, qr/\Apartly delivered: delivered to a\@x; not to b\@x, c\@x/,
		'partly delivered: the message names both');
	is_deeply([ map { ref } $e->failures ], [ map { "Email::Sender::Failure::$_" } qw(Permanent Temporary) ],
		'partly delivered: each failure of its kind');

	$srv = answering('Kok', 'Zover quota', 'Kok');
	($r, $e) = try_send(transport($srv));
	ok($e && $e->isa('Email::Sender::Failure::Temporary'),
		'partly delivered, the rest for now: a temporary failure as a whole (Multi)');
	is_deeply(recipients_of($e), ['b@x'], 'a caller retrying it retries only b@x');

	# Through Email::Sender::Simple, as applications see it.
	eval { Email::Sender::Simple->send(email(), { transport => transport($srv) }) };
	$e = $@;
	is_deeply(recipients_of($e), ['b@x'], 'through Email::Sender::Simple: only b@x');
	ok(!Email::Sender::Simple->try_to_send(email(), { transport => transport($srv) }),
		'try_to_send: false');

	my $partial = transport($srv, allow_partial_success => 1);
	($r, $e) = try_send($partial);
	isa_ok($r, 'Email::Sender::Success::Partial', 'allow_partial_success: a partial success');
	is_deeply([ $r->failure->recipients ], ['b@x'], 'allow_partial_success: its failure names b@x only');
	is($r->message, 'ok', "allow_partial_success: the accepting text");
	eval { Email::Sender::Simple->send(email(), { transport => $partial }) };
	like($@, qr/not safe for use with Email::Sender::Simple/,
		'Email::Sender::Simple refuses a transport that reports partial success');
}

{
	# A server that answers once per message, declared.
	my $srv = Test::QMTPServer->new(sub {
		my ($c) = @_;
		while ($c->read_package) { $c->respond('Kqueued once') or last }
	});
	my $t = transport($srv, answers => 'package');
	my ($r, $e) = try_send($t);
	isa_ok($r, 'Email::Sender::Success', 'one answer per message, declared: success');
	is($r->message, 'queued once', 'one answer per message: the text once');
	my $srv2 = Test::QMTPServer->new(sub {
		my ($c) = @_;
		while ($c->read_package) { $c->respond('Dspam') or last }
	});
	($r, $e) = try_send(transport($srv2, answers => 'package'));
	isa_ok($e, 'Email::Sender::Failure::Permanent', 'one refusal per message');
	is_deeply(recipients_of($e), \@TO, 'one refusal per message: every recipient');
}

{
	# A port nobody listens on.
	my $sock = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp', Listen => 1);
	my $port = $sock->sockport;
	close $sock;
	my $t = Email::Sender::Transport::QMTP->new(host => '127.0.0.1', port => $port);
	my ($r, $e) = try_send($t);
	isa_ok($e, 'Email::Sender::Failure::Temporary', 'connection refused');
	is_deeply(recipients_of($e), \@TO, 'connection refused: every recipient');
	like($e->message, qr/\Aunable to establish a QMTP connection to 127\.0\.0\.1 port $port: .*refused/i,
		'connection refused: says where and why');
}

{
	my $srv = Test::QMTPServer->new(sub { my ($c) = @_; $c->read_package; $c->sleep(8) });
	my $t0 = Time::HiRes::time();
	my ($r, $e) = try_send(transport($srv, timeout => 1));
	my $took = Time::HiRes::time() - $t0;
	isa_ok($e, 'Email::Sender::Failure::Temporary', 'a server that stalls after the message');
	is_deeply(recipients_of($e), \@TO, 'a stall: every recipient');
	like($e->message, qr/no response received/, 'a stall: says no answer came');
	cmp_ok($took, '<', 5, 'a stall: within the timeout, not the stall');

	$srv = Test::QMTPServer->new(sub { my ($c) = @_; $c->read_package; $c->close });
	($r, $e) = try_send(transport($srv));
	isa_ok($e, 'Email::Sender::Failure::Temporary', 'a server that hangs up without answering');
	like($e->message, qr/no response received: connection closed/, 'a hang-up: says so');

	# A small receive window, and a message far bigger than the socket
	# buffers: it cannot be written in full before the cut, even under load.
	$srv = Test::QMTPServer->new(rcvbuf => 4096, script => sub { my ($c) = @_; $c->read_bytes(10); $c->close });
	($r, $e) = try_send(transport($srv), Email::Simple->create(header => [From => 's@x'], body => 'x' x 16_000_000));
	isa_ok($e, 'Email::Sender::Failure::Temporary', 'a hang-up before the message was written in full');
	like($e->message, qr/\AQMTP to 127\.0\.0\.1 port \d+: not sent/, 'not sent: says so');
}

{
	# A recipient listed twice is accepted once: it has the message.
	my $srv = answering('Kok', 'Dno', 'Kok');
	my ($r, $e) = try_send(transport($srv, answers => 'recipient'), undef,
		{ from => 's@x', to => ['a@x', 'a@x', 'b@x'] });
	isa_ok($r, 'Email::Sender::Success', 'a@x twice, accepted once and refused once: a success');
	$srv = answering('Kok', 'Dno', 'Zlater');
	($r, $e) = try_send(transport($srv, answers => 'recipient'), undef,
		{ from => 's@x', to => ['a@x', 'a@x', 'b@x'] });
	is_deeply(recipients_of($e), ['b@x'], 'a@x twice, accepted once: never named in the failure');
	unlike($e->message, qr/not to a\@x/, 'nor in its message');
	$srv = answering('Kok', 'Kok', 'Kok', 'Kextra');
	($r, $e) = try_send(transport($srv, answers => 'recipient'));
	isa_ok($e, 'Email::Sender::Failure::Temporary', 'answers that do not fit the recipients');
	like($e->message, qr/\Athe message was not accepted for now: deferral: no response received: the server's answers did not match/,
		'answers that do not fit: not called a refusal by the server');
	ok(!defined $e->code, 'answers that do not fit: no code of the server\'s');
}

{
	# total_timeout bounds the whole send, connecting included: a first
	# server that never accepts, then one that stalls.
	my $listen = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp', Listen => 1);
	my @fill = map { IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $listen->sockport, Blocking => 0) } 1 .. 8;
	my $srv = Test::QMTPServer->new(sub { my ($c) = @_; $c->read_package; $c->sleep(8) });
	my $t = Email::Sender::Transport::QMTP->new(host => ['127.0.0.1:' . $listen->sockport, '127.0.0.1:' . $srv->port],
		connect_timeout => 1.5, timeout => 10, total_timeout => 2);
	my $t0 = Time::HiRes::time();
	my ($r, $e) = try_send($t);
	my $took = Time::HiRes::time() - $t0;
	isa_ok($e, 'Email::Sender::Failure::Temporary', 'total_timeout');
	# Connecting takes 1.5 s of the 2: a limit started anew after it would
	# let the stall run to 3.5 s.
	cmp_ok($took, '<', 3.2, sprintf('total_timeout 2 bounds the send, connecting included (%.2f s)', $took));
}

SKIP: {
	require Config;
	skip 'perl without threads', 2 unless $Config::Config{useithreads} && eval { require threads; 1 };
	my $srv = answering('Kok');
	for my $class (qw(Email::Sender::Transport::QMTP Email::Sender::Transport::QMTP::Persistent)) {
		my $t = $class->new(host => '127.0.0.1', port => $srv->port);
		try_send($t, undef, { from => 's@x', to => ['a@x'] });
		$t->disconnect;
		my $ok = threads->create(sub {
			my ($r) = try_send($t, undef, { from => 's@x', to => ['a@x'] });
			$t->disconnect;
			return $r && $r->isa('Email::Sender::Success') ? 1 : 0;
		})->join;
		ok($ok, "$class made before a thread sends from it");
	}
}

{
	# Not persistent: a connection per message, closed after it.
	my $srv = answering('Kok', 'Kok', 'Kok');
	my $t = transport($srv);
	isa_ok((try_send($t))[0], 'Email::Sender::Success', "send $_") for 1 .. 3;
	is($srv->connections, 3, 'not persistent: one connection per message');
	ok($srv->wait_closed($_, 5), "not persistent: connection $_ closed by the client") for 0 .. 2;
}

{
	my $srv = answering('Kok', 'Kok', 'Kok');
	my $t = Email::Sender::Transport::QMTP::Persistent->new(host => '127.0.0.1', port => $srv->port,
		answers => 'recipient');
	my $ok = grep { eval { $t->send(email(), { from => 's@x', to => [@TO] }) } } 1 .. 20;
	is($ok, 20, 'persistent: 20 successes');
	is($srv->connections, 1, 'persistent: over one connection');
	ok(!$srv->client_closed(0), 'persistent: the connection stays open');
	is(scalar(() = $srv->packages(0)), 20, 'persistent: 20 packages on it');
	$t->disconnect;
	ok($srv->wait_closed(0, 5), 'disconnect closes it');
	isa_ok((try_send($t))[0], 'Email::Sender::Success', 'after disconnect, a send opens a new one');
	is($srv->connections, 2, 'after disconnect: a second connection');
}

{
	# The server closes the persistent connection after each message.
	my $srv = Test::QMTPServer->new(sub {
		my ($c) = @_;
		$c->read_package or return;
		$c->answer_all('Kok');
		$c->close;
	});
	my $t = Email::Sender::Transport::QMTP::Persistent->new(host => '127.0.0.1', port => $srv->port);
	my @r = map { Time::HiRes::sleep(0.1); (try_send($t))[0] } 1 .. 3;
	is(scalar(grep { $_ && $_->isa('Email::Sender::Success') } @r), 3,
		'a server that closed the idle persistent connection: every send succeeds');
	is($srv->connections, 3, 'a new connection for each');
	is(scalar(() = $srv->packages($_)), 1, "connection $_ got its message once") for 0 .. 2;
}

{
	# A forked child does not write to its parent's persistent connection.
	# The server takes one connection at a time: the child's waits until
	# the parent disconnects.
	my $srv = answering('Kok');
	my $t = Email::Sender::Transport::QMTP::Persistent->new(host => '127.0.0.1', port => $srv->port);
	my $env = { from => 's@x', to => ['a@x'] };
	ok((try_send($t, undef, $env))[0], 'parent: first send');
	my $pid = fork;
	if (defined $pid && $pid == 0) {
		my ($r) = try_send($t, undef, $env);
		POSIX::_exit($r ? 0 : 1);
	}
	ok((try_send($t, undef, $env))[0], 'parent: a send after the fork');
	$t->disconnect;
	waitpid $pid, 0;
	is($?, 0, 'the child sent');
	is($srv->connections, 2, 'the child used a connection of its own');
	is(scalar(() = $srv->packages(0)), 2, "the parent's connection got the parent's two messages");
	is(scalar(() = $srv->packages(1)), 1, "the child's got the child's");
}

{
	# Nothing the caller passed is changed.
	my $srv = answering('Kok', 'Kok');
	my $email = email('a@x', 'b@x');
	my $before = $email->as_string;
	my $env = { from => 's@x', to => ['a@x', 'b@x'] };
	my $args = { host => ['127.0.0.1'], port => $srv->port, answers => 'recipient' };
	my $t = Email::Sender::Transport::QMTP->new($args);
	try_send($t, $email, $env);
	is($email->as_string, $before, 'the email is not changed');
	is_deeply($env, { from => 's@x', to => ['a@x', 'b@x'] }, 'the envelope is not changed');
	is_deeply($args, { host => ['127.0.0.1'], port => $srv->port, answers => 'recipient' },
		'the arguments are not changed');
}

{
	# An address object is read once: what is checked is what is sent.
	package Test91::Addr;
	my $reads = 0;
	use overload '""' => sub { $reads++ ? 'other@x' : 'a@x' }, fallback => 1;
	package main;
	my $srv = answering('Kok');
	my ($r) = try_send(transport($srv), undef, { from => 's@x', to => [ bless {}, 'Test91::Addr' ] });
	isa_ok($r, 'Email::Sender::Success', 'an overloaded recipient');
	is($reads, 1, 'its overloading ran once');
	is_deeply([ map { @{ $_->{recipients} } } $srv->packages(0) ], ['a@x'], 'the address read is the one sent');
}

{
	my $srv = answering('Kok');
	my $t = transport($srv);
	my ($r, $e) = try_send($t, undef, { from => 's@x', to => [] });
	isa_ok($e, 'Email::Sender::Failure', 'no recipient');
	like($e->message, qr/no valid addresses/, 'no recipient: says so');
	($r, $e) = try_send($t, undef, { from => undef, to => ['a@x'] });
	isa_ok($e, 'Email::Sender::Failure::Permanent', 'no sender');
	like($e->message, qr/\Ano sender/, 'no sender: says so');
	is($srv->connections, 0, 'neither connected');

	my $wide = do { local $SIG{__WARN__} = sub {}; # Email::Simple's own "Body with wide characters"
		Email::Simple->create(header => [From => 's@x'], body => "caf\x{e9} \x{263a}") };
	eval { $t->send($wide, { from => 's@x', to => ['a@x'] }) }; my $line = __LINE__;
	like($@, qr/characters above 255: encode it to bytes first.* at \Q$0\E line $line\.$/m,
		'a wide character dies at the caller\'s line');

	eval { $t->send(email(), { from => 's@x', to => ["\x{263a}\@x"] }) }; $line = __LINE__;
	like($@, qr/the address '.*' has characters above 255.* at \Q$0\E line $line\.$/,
		'a wide character in an address dies at the caller\'s line');
	is($srv->connections, 0, 'before connecting');

	for my $case (
		[ { port => 70000 }, qr/port must be a number from 1 to 65535/ ],
		[ { timeout => 0 }, qr/timeout must be a positive number of seconds/ ],
		[ { answers => 'sometimes' }, qr/answers must be 'auto', 'recipient' or 'package'/ ],
		[ { encoding => 'mac' }, qr/encoding must be 'unix' or 'dos'/ ],
		[ { encoding => 'dos', crlf_to_lf => 1 }, qr/crlf_to_lf makes no sense with encoding 'dos'/ ],
		[ { host => '' }, qr/host must be a server or a list of servers/ ],
		[ { host => "a\0b" }, qr/host 'a\\x00b' contains a NUL byte/ ],
		[ { host => 'a', hosts => ['b'] }, qr/give host or hosts, not both/ ],
		[ { hots => 'a' }, qr/unknown argument 'hots'/ ],
	) {
		my ($args, $want) = @$case;
		eval { Email::Sender::Transport::QMTP->new(%$args) }; my $line = __LINE__;
		like($@, qr/\AEmail::Sender::Transport::QMTP: $want.* at \Q$0\E line $line\.$/,
			'bad argument ' . join(', ', %$args) . ' dies at the caller\'s line');
	}
	is_deeply([ Email::Sender::Transport::QMTP->new(host => 'a.example, b.example:2209')->hosts ],
		['a.example', 'b.example:2209'], 'a list of servers in one string');
	is_deeply([ Email::Sender::Transport::QMTP->new(host => " a.example ,b.example\n")->hosts ],
		['a.example', 'b.example'], 'spaces around the servers of a list go');
	eval { Email::Sender::Transport::QMTP->new(host => 'a.example,') };
	like($@, qr/server 2 is ''/, 'an empty server in a list dies, naming it');
	eval { Email::Sender::Transport::QMTP->new(host => 'a b') };
	like($@, qr/server 1 is 'a b'/, 'a server with a space dies');
	my $d = Email::Sender::Transport::QMTP->new(port => undef, timeout => undef, crlf_to_lf => undef);
	is_deeply([ $d->port, $d->timeout, $d->crlf_to_lf ], [209, 120, 1], 'an undefined argument is one not given');
	is_deeply([ Email::Sender::Transport::QMTP->new(hosts => ['a', 'b'])->hosts ], ['a', 'b'],
		'hosts, as the SMTP transport has');
}

{
	# Net::QMTP needs no Email::Sender; the transport says what to install.
	my $core = `$^X -Mblib -e 'use Net::QMTP; print join " ", grep { m{^(Moo|Email)} } sort keys %INC' 2>&1`;
	is($core, '', 'Net::QMTP loads neither Moo nor Email::Sender');
	my $hide = q{BEGIN { unshift @INC, sub { die "hidden for the test\n" if $_[1] =~ m{^(?:Moo|Email/Sender/(?!Transport/QMTP))}; return } }};
	my $out = `$^X -Mblib -e '$hide use Email::Sender::Transport::QMTP; print "loaded\n"' 2>&1`;
	like($out, qr/\AEmail::Sender::Transport::QMTP needs Email::Sender, which could not be loaded: install it \(Debian: libemail-sender-perl; CPAN: Email::Sender\)/,
		'without Email::Sender, loading the transport says what to install');
	$out = `$^X -Mblib -e '$hide use Email::Sender::Transport::QMTP::Persistent; print "loaded\n"' 2>&1`;
	like($out, qr/\AEmail::Sender::Transport::QMTP needs Email::Sender/, 'the persistent one too');
}

done_testing;

#!/usr/bin/perl
# "Results you can trust", the caller's side: every value the caller passes
# (ties, overloads, UTF-8 strings, files) is read once, before anything is
# borrowed, and never changed; files that change, FIFOs and dying handlers
# cannot make a send lie, hang or leak. Each case was a defect of 1.00.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use POSIX ();
use Time::HiRes ();

use Net::QMTP;
use lib 't/lib';
use Test::QMTPServer;
use Test::QMTPFaults qw(fd_count);

$SIG{PIPE} = 'DEFAULT';    # a SIGPIPE would kill the test: it must never come
my $DIR = tempdir(CLEANUP => 1);

sub ns { length($_[0]) . ':' . $_[0] . ',' }

sub package_bytes {
	my ($message, $sender, @rcpts) = @_;
	return ns("\n" . $message) . ns($sender) . ns(join '', map { ns($_) } @rcpts);
}

# Answers every package, once per recipient, with the sender and position.
sub identity_server {
	my (%opt) = @_;
	return Test::QMTPServer->new(%opt, script => sub {
		my ($c, $n) = @_;
		my $p = 0;
		while (my $pkg = $c->read_package) {
			$p++;
			$c->respond(map { "Kc$n p$p $_" } @{ $pkg->{recipients} }) or last;
		}
	});
}

sub client {
	my ($srv, %opt) = @_;
	my $q = Net::QMTP->new($srv->host, Port => $srv->port, Timeout => 5, HalfCloseAfter => 0.2, %opt)
		or die "cannot connect: $@";
	return $q;
}

# A case in its own subtest, with an alarm: a hang is a failure, not the end.
sub case {
	my ($name, $code) = @_;
	local $SIG{ALRM} = sub { die "hung\n" };
	alarm 30;
	subtest $name => sub {
		my $ok = eval { $code->(); 1 };
		fail("$name: died: $@") unless $ok;
	};
	alarm 0;
}

package Tie::Plain {
	sub TIESCALAR { my ($c, $v) = @_; return bless { v => $v, reads => 0 }, $c }
	sub FETCH { $_[0]{reads}++; $_[0]{v} }
	sub STORE { $_[0]{v} = $_[1] }
}

package Tie::List {
	sub TIEARRAY { my ($c, @v) = @_; return bless [@v], $c }
	sub FETCH { $_[0][ $_[1] ] }
	sub FETCHSIZE { scalar @{ $_[0] } }
	sub STORE { $_[0][ $_[1] ] = $_[2] }
	sub STORESIZE { $#{ $_[0] } = $_[1] - 1 }
}

package Tie::Job {
	sub TIEHASH { my ($c, %v) = @_; return bless {%v}, $c }
	sub FETCH { $_[0]{ $_[1] } }
	sub EXISTS { exists $_[0]{ $_[1] } }
	sub FIRSTKEY { my @k = sort keys %{ $_[0] }; $k[0] }
	sub NEXTKEY { my @k = sort keys %{ $_[0] }; for my $i (0 .. $#k) { return $k[ $i + 1 ] if $k[$i] eq $_[1] } undef }
	sub STORE { $_[0]{ $_[1] } = $_[2] }
}

# Its string form runs the caller's code given, each time it is read.
package Sneaky {
	use overload '""' => sub { $_[0]{code}->(); $_[0]{text} }, fallback => 1;
	sub new { my ($c, $text, $code) = @_; return bless { text => $text, code => $code }, $c }
}

package main;

case 'tied recipients, tied jobs and tied scalars are read through their FETCH' => sub {
	my $srv = identity_server();
	my $q = client($srv);
	tie my @rcpts, 'Tie::List', 'a@x', 'b@x';
	tie my $sender, 'Tie::Plain', 's@x';
	tie my %job, 'Tie::Job', sender => 's2@x', recipients => ['c@x'], message => "two\n";
	my $res = $q->send_many({ sender => $sender, recipients => \@rcpts, message => "one\n" }, \%job);
	is($res && $res->[0]{error}, undef, 'job 1 (tied recipients, tied sender) sent');
	is_deeply($res && $res->[0]{result}, { 'a@x' => 'success: c0 p1 a@x', 'b@x' => 'success: c0 p1 b@x' },
		'job 1: both tied recipients answered');
	is_deeply($res && $res->[1]{result}, { 'c@x' => 'success: c0 p2 c@x' }, 'job 2 (a tied hash) answered');
	is($srv->received(0), package_bytes("one\n", 's@x', 'a@x', 'b@x') . package_bytes("two\n", 's2@x', 'c@x'),
		'the server got exactly the tied values');
	is(tied($sender)->{reads}, 1, 'a tied value is fetched once');

	$q->sender($sender);
	$q->{RECIPIENTS} = \@rcpts;    # as code written for 0.06 may do
	$q->message("three\n");
	my $r = $q->send;
	is_deeply($r, { 'a@x' => 'success: c0 p3 a@x', 'b@x' => 'success: c0 p3 b@x' }, 'send() with a tied array');
};

case 'send_many leaves UTF-8 strings, read-only ones too, as they were' => sub {
	my $srv = identity_server();
	my $q = client($srv);
	my %job = (sender => "s\x{e9}\@x", recipients => ["r\x{e9}\@x"], message => "caf\x{e9}\n");
	utf8::upgrade($_) for $job{sender}, $job{recipients}[0], $job{message};
	Internals::SvREADONLY($job{sender}, 1);
	my $res = $q->send_many(\%job);
	is($res && $res->[0]{error}, undef, 'sent');
	ok(utf8::is_utf8($job{message}) && utf8::is_utf8($job{recipients}[0]) && utf8::is_utf8($job{sender}),
		'every string of the job is still UTF-8');
	is($job{message}, "caf\x{e9}\n", 'and has the same value');
	is($srv->received(0), package_bytes("caf\xe9\n", "s\xe9\@x", "r\xe9\@x"), 'the server got their bytes');
	is_deeply([ keys %{ $res->[0]{result} } ], ["r\x{e9}\@x"], 'the result is keyed by the recipient');
};

case "a later job's code cannot move an earlier job's message" => sub {
	my $srv = identity_server(rcvbuf => 4096);
	my $q = client($srv);
	my @jobs = ({ sender => 's1@x', recipients => ['a@x'], message => "\xe9" x 300_000 });
	my $copy = $jobs[0]{message};
	# Upgrading the message reallocates its buffer, which a send borrows.
	my $sender = Sneaky->new('s2@x', sub { utf8::upgrade($jobs[0]{message}) });
	push @jobs, { sender => $sender, recipients => ['b@x'], message => "second\n" };
	my $res = $q->send_many(@jobs);
	is($res && $res->[0]{error}, undef, 'job 1 sent');
	my @p = $srv->packages(0);
	is(scalar @p, 2, 'two packages');
	ok($p[0] && $p[0]{message} eq $copy, "the server got job 1's bytes exactly");
	is($res->[0]{result}{'a@x'}, 'success: c0 p1 a@x', 'job 1 answered');
	is($jobs[0]{message}, $copy, "job 1's message has its value");
};

case 'recipients appended during send_many get no answer' => sub {
	my $srv = identity_server();
	my $q = client($srv);
	my @rcpts = ('a@x');
	my $sender = Sneaky->new('s2@x', sub { push @rcpts, 'never@x' });
	my $res = $q->send_many(
		{ sender => 's1@x', recipients => \@rcpts, message => "one\n" },
		{ sender => $sender, recipients => ['b@x'], message => "two\n" },
	);
	is_deeply($res && $res->[0]{result}, { 'a@x' => 'success: c0 p1 a@x' }, 'job 1: only the recipient it was sent to');
	is_deeply($res && $res->[1]{result}, { 'b@x' => 'success: c0 p2 b@x' }, "job 2: its own answer");
	is(scalar @{ $res->[0]{responses} }, 1, 'job 1: one response');
};

case 'a NUL byte in a file name is refused, not cut short' => sub {
	my $q = Net::QMTP->new('127.0.0.1', DeferConnect => 1);
	my $res = eval { $q->send_many({ sender => 's@x', recipients => ['a@x'], file => "/etc/hostname\0.msg" }) };
	like($@, qr/\Asend_many: job 1: file name contains a NUL byte at \Q$0\E line/, 'send_many croaks at the caller');
};

case 'a FIFO as a message file is refused at once, never waited on' => sub {
	my $fifo = "$DIR/fifo";
	POSIX::mkfifo($fifo, 0600) or die "mkfifo: $!";
	my $srv = identity_server();
	my $q = client($srv);
	my $t0 = Time::HiRes::time();
	my $res = $q->send_many({ sender => 's@x', recipients => ['a@x'], file => $fifo },
		{ sender => 's@x', recipients => ['b@x'], message => "m\n" });
	cmp_ok(Time::HiRes::time() - $t0, '<', 3, 'send_many returned at once');
	like($res && $res->[0]{error} // '', qr/\AFile '\Q$fifo\E' is special, not a regular file/, 'the FIFO job says why');
	is_deeply($res && $res->[1]{result}, { 'b@x' => 'success: c0 p1 b@x' }, 'the other job was sent');

	$q->new_envelope;
	$q->sender('s@x');
	$q->recipient('a@x');
	$q->message_from_file($fifo);
	my @warn;
	local $SIG{__WARN__} = sub { push @warn, @_ };
	$t0 = Time::HiRes::time();
	is($q->send, undef, 'send() from a FIFO returns undef');
	cmp_ok(Time::HiRes::time() - $t0, '<', 3, '... at once');
	like($q->error // '', qr/is special, not a regular file/, '... saying why');
};

case 'an empty file that grows while queued behind another job is not sent empty' => sub {
	my $file = "$DIR/grows";
	open my $fh, '>', $file or die $!;
	close $fh;
	my $srv = Test::QMTPServer->new(rcvbuf => 4096, script => sub {
		my ($c) = @_;
		my $begun = $c->read_bytes(1000);    # job 1 has begun: job 2's file is open and empty
		$c->{buf} = $begun . $c->{buf};      # and is read as a package below
		open my $g, '>>', $file or die $!;
		print $g "grown\n";
		close $g;
		while (my $pkg = $c->read_package) {
			$c->answer_all('K', 'ok') or last;
		}
	});
	my $q = client($srv);
	my $res = $q->send_many({ sender => 's@x', recipients => ['a@x'], message => 'x' x 2_000_000 },
		{ sender => 's@x', recipients => ['b@x'], file => $file });
	is($res && $res->[0]{result}{'a@x'}, 'success: ok', 'job 1 answered');
	is($res && $res->[1]{result}, undef, 'job 2 has no result');
	like($res && $res->[1]{error} // '', qr/\AFile '\Q$file\E' grew while being sent/, 'job 2 says its file grew');
	my @p = $srv->packages(0);
	is(scalar @p, 1, 'the server never got job 2 complete');
};

case "a file job keeps its own error when the run fails later" => sub {
	my $file = "$DIR/shrinks";
	open my $fh, '>', $file or die $!;
	print $fh 'y' x 3_000_000;
	close $fh;
	my $srv = Test::QMTPServer->new(rcvbuf => 4096, script => sub {
		my ($c) = @_;
		$c->read_package or return;    # job 1, which is never answered
		$c->read_bytes(100_000);       # job 2's file is being sent
		truncate $file, 1000 or die $!;
		$c->read_until_eof;
	});
	my $q = client($srv, Timeout => 1);
	my $res = $q->send_many({ sender => 's@x', recipients => ['a@x'], message => "one\n" },
		{ sender => 's@x', recipients => ['b@x'], file => $file });
	like($res && $res->[0]{result}{'a@x'} // '', qr/\Adeferral: no response received: timed out/, 'job 1: a deferral');
	like($res && $res->[1]{error} // '', qr/\AFile '\Q$file\E' shrank while being sent/, 'job 2: its file shrank, not a timeout');
};

case 'a handler that dies in send_many leaves no file open' => sub {
	my @files = map { my $f = "$DIR/q$_"; open my $fh, '>', $f or die $!; print $fh "m $_\n"; close $fh; $f } 1 .. 50;
	my $srv = Test::QMTPServer->new(rcvbuf => 4096, script => sub {
		my ($c) = @_;
		$c->read_bytes(10);
		$c->sleep(5);    # the client waits, with every file open
	});
	my $q = client($srv);
	my $before = fd_count();
	local $SIG{ALRM} = sub { die "handler\n" };
	Time::HiRes::alarm(0.5);
	my $res = eval {
		$q->send_many({ sender => 's@x', recipients => ['a@x'], message => 'x' x 1_000_000 },
			map { { sender => 's@x', recipients => ['b@x'], file => $_ } } @files);
	};
	Time::HiRes::alarm(0);
	is($@, "handler\n", 'the handler ended send_many');
	cmp_ok(fd_count(), '<=', $before, 'no descriptor left open') or diag "before $before, after " . fd_count();
};

case 'responses() looked at by a handler during send() is not kept' => sub {
	my $srv = Test::QMTPServer->new(script => sub {
		my ($c) = @_;
		while ($c->read_package) {
			$c->sleep(0.6);
			$c->answer_all('K', 'ok') or last;
		}
	});
	my $q = client($srv);
	$q->sender('s@x');
	$q->recipient($_) for 'a@x', 'b@x';
	$q->message("m\n");
	my $seen;
	local $SIG{ALRM} = sub { $seen = scalar @{ $q->responses } };
	Time::HiRes::alarm(0.2);
	my $res = $q->send;
	Time::HiRes::alarm(0);
	ok(defined $seen, 'the handler ran during the send');
	is_deeply($res, { 'a@x' => 'success: ok', 'b@x' => 'success: ok' }, 'two successes');
	is(scalar @{ $q->responses }, 2, 'responses() has both afterwards');
};

case "a hostile server's answer texts are bounded in all" => sub {
	my $n = 320;
	my $srv = Test::QMTPServer->new(script => sub {
		my ($c) = @_;
		$c->read_package or return;
		$c->respond(map { "K$_ " . ('t' x 60_000) } 1 .. $n);
		$c->wait_eof(10);
	});
	my $q = client($srv, Timeout => 10);
	$q->sender('s@x');
	$q->recipient("r$_\@x") for 1 .. $n;
	$q->message("m\n");
	my $res = $q->send;
	my @r = @{ $q->responses };
	my @kept = grep { $_->{received} } @r;
	my $limit = 16 * 1024 * 1024 + 1024 * $n;
	cmp_ok(scalar @kept, '<', $n, 'not every answer text was kept');
	cmp_ok(length(join '', map { $_->{text} } @kept), '<=', $limit, 'those kept fit the documented limit');
	is($r[-1]{code}, 'Z', 'an answer beyond the limit is a deferral');
	like($r[-1]{text}, qr/text limit/, '... saying why');
	is($r[0]{response}, 'success: 1 ' . ('t' x 60_000), 'the first answers are kept whole');
};


case 'a connection that showed per-recipient answers is still checked when pipelining' => sub {
	for my $answers ('auto', 'recipient') {
		my $srv = Test::QMTPServer->new(script => sub {
			my ($c) = @_;
			$c->read_package or return;
			$c->respond('Kp0a', 'Kp0b');    # per recipient, it seems
			$c->read_package or return;
			$c->read_package or return;
			$c->respond('Dp1 refused', 'Kp2 ok');    # then once per package
			$c->sleep(0.3);
			$c->close;
		});
		my $q = client($srv, Answers => $answers);
		$q->sender('s@x');
		$q->recipient($_) for 'a@x', 'b@x';
		$q->message("m0\n");
		is_deeply($q->send, { 'a@x' => 'success: p0a', 'b@x' => 'success: p0b' }, "$answers: first send");
		my $r = $q->send_many({ sender => 's@x', recipients => ['c@x', 'd@x'], message => "m1\n" },
			{ sender => 's@x', recipients => ['e@x', 'f@x'], message => "m2\n" });
		is($r->[0]{result}{'c@x'}, 'failure: p1 refused', "$answers: the first answer is the first recipient's");
		for my $rcpt ('d@x', 'e@x', 'f@x') {
			my $got = $r->[ $rcpt eq 'd@x' ? 0 : 1 ]{result}{$rcpt} // '';
			like($got, qr/\Adeferral: .*did not match its packages/, "$answers: $rcpt is a deferral, not another package's answer");
		}
		like($q->error // '', qr/did not match its packages: fewer answers than recipients, then connection closed by the server\z/,
			"$answers: error() says so, and why");
	}
};

case "send_many's error() says answers were lost even when another job was cut" => sub {
	# 16 MB through a 4 KiB window is minutes under valgrind, and this is
	# Perl-side logic: the plain run covers it.
	return pass('skipped under valgrind') if $ENV{NET_QMTP_VALGRIND};
	# A small receive buffer: job 2 cannot be written in full before the cut.
	my $srv = Test::QMTPServer->new(rcvbuf => 4096, script => sub {
		my ($c, $n) = @_;
		if ($n == 0) {
			$c->read_package or return;    # job 1, written in full, never answered
			$c->read_bytes(1000);
			$c->close;                     # job 2 cut mid-write
			return;
		}
		while ($c->read_package) {
			$c->answer_all('K', 'ok') or last;
		}
	});
	my $q = client($srv);
	my $r = $q->send_many({ sender => 's@x', recipients => ['a@x'], message => "m1\n" },
		{ sender => 's@x', recipients => ['b@x'], message => 'x' x 16_000_000 });    # more than any socket buffer
	like($r->[0]{result}{'a@x'} // '', qr/\Adeferral: no response received/, 'job 1: its answer was lost');
	is($r->[1]{result}{'b@x'}, 'success: ok', 'job 2: sent again, and accepted');
	like($q->error // '', qr/\S/, 'error() says what happened to job 1');
};

case 'a message send_many keeps in place is read-only until it returns, then as before' => sub {
	# 16 MB through a 4 KiB window is minutes under valgrind, and this is
	# Perl-side logic: the plain run covers it.
	return pass('skipped under valgrind') if $ENV{NET_QMTP_VALGRIND};
	my $srv = Test::QMTPServer->new(rcvbuf => 4096, script => sub {
		my ($c, $n) = @_;
		if ($n == 0) {
			$c->read_package or return;
			$c->respond('Kjob1');
			$c->read_bytes(1000);
			$c->close;    # job 2 cut: it goes again in a second round
			return;
		}
		$c->sleep(0.6);
		while ($c->read_package) {
			$c->respond('Kgot ' . length($c->last_package->{message})) or last;
		}
	});
	my $q = client($srv);
	my @jobs = ({ sender => 's@x', recipients => ['a@x'], message => "m1\n" },
		{ sender => 's@x', recipients => ['b@x'], message => 'y' x 16_000_000 });    # more than any socket buffer
	my $during;
	local $SIG{ALRM} = sub { $during = Internals::SvREADONLY($jobs[1]{message}) };
	Time::HiRes::alarm(0.3);
	my $r = $q->send_many(@jobs);
	Time::HiRes::alarm(0);
	ok($during, 'read-only while send_many ran');
	ok(!Internals::SvREADONLY($jobs[1]{message}), 'writable again afterwards');
	is($r->[1]{result}{'b@x'}, 'success: got 16000000', 'the second round sent the bytes prepared');
};

done_testing();

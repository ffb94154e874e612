#!perl
# send_stream(): an unbounded stream of jobs pipelined in windows. Results
# come back in order, one per job taken, each the server's answer for that
# job (an oracle: the server answers with the message it read); no more
# jobs are held than the window allows, by jobs and by bytes; the caller
# can stop it, and still hears of every job already taken; faults in the
# middle of the stream (a hang-up after k answers, a stall past Timeout, a
# refused reconnect) give deferrals and "not sent" where send_many() would,
# never a success the server did not give; a malformed job dies naming its
# place in the stream, after the jobs before it were sent and reported. A
# run of a million jobs (NET_QMTP_SOAK) keeps its memory flat.

use strict;
use warnings;

use Test::More;
use Time::HiRes ();

use Net::QMTP;
use lib 't/lib';
use Test::QMTPServer;
use Test::QMTPFaults qw(case);

$SIG{ALRM} = 'DEFAULT';
alarm 600;
$SIG{PIPE} = 'DEFAULT';

# A server that answers each recipient with K and the message it read: the
# answer says which job it belongs to.
sub echo_server {
	my (%opt) = @_;
	my $script = delete $opt{script};
	return Test::QMTPServer->new(%opt, script => $script || sub {
		my ($c) = @_;
		while (my $pkg = $c->read_package) {
			$c->respond(map { "Kgot $pkg->{message}" } @{ $pkg->{recipients} }) or last;
		}
	});
}

sub client {
	my ($srv, %opt) = @_;
	my $q = Net::QMTP->new('127.0.0.1', Port => $srv->port, Timeout => 10, Answers => 'recipient', %opt)
		or die "connect: $@";
	return $q;
}

# An iterator of $n jobs (message "m<i>"), counting what it gave.
sub jobs {
	my ($n, $given, %extra) = @_;
	my $i = 0;
	return sub {
		return undef if $i >= $n;
		$$given++ if $given;
		my $k = $i++;
		return { sender => 's@x', recipients => $k % 3 ? ['a@x'] : ['a@x', 'b@x'], message => "m$k",
			%extra };
	};
}

case('results in order, one per job, each its own answer', 60, sub {
	my $srv = echo_server();
	my $q = client($srv);
	my (@seen, $bad);
	my $n = $q->send_stream(jobs => jobs(1000), window => 64, on_result => sub {
		my ($r, $i) = @_;
		push @seen, $i;
		my @rcpts = @{ $r->{job}{recipients} };
		for my $rcpt (@rcpts) {
			$bad++ unless $r->{result} && $r->{result}{$rcpt} eq "success: got m$i";
		}
		$bad++ unless @{ $r->{responses} } == @rcpts;
	});
	is($n, 1000, 'send_stream returns how many jobs it took');
	is_deeply(\@seen, [0 .. 999], 'on_result is called once per job, in order');
	ok(!$bad, 'every recipient got the answer to its own message');
	is($q->error, undef, 'error() is undef');
	is($srv->connections, 1, 'over one connection');
	my @pkgs = $srv->packages(0);
	is_deeply([ map { $_->{message} } @pkgs ], [ map { "m$_" } 0 .. 999 ], 'the server got every job once, in order');
});

case('ok, and the lean form', 60, sub {
	my $srv = echo_server(script => sub {
		my ($c) = @_;
		while (my $pkg = $c->read_package) {
			my ($k) = $pkg->{message} =~ /(\d+)/;
			my @a = map { "Kgot $pkg->{message}" } @{ $pkg->{recipients} };
			$a[-1] = 'Dno' if $k % 5 == 4;
			$c->respond(@a) or last;
		}
	});
	for my $lean (0, 1) {
		my $q = client($srv);
		my ($bad, $oks) = (0, 0);
		$q->send_stream(jobs => jobs(200), window => 16, lean => $lean, on_result => sub {
			my ($r, $i) = @_;
			my $refused = $i % 5 == 4;
			$bad++, return if !!$r->{ok} == $refused;
			$oks++ if $r->{ok};
			if ($r->{ok} && $lean) {
				$bad++ unless join(',', sort keys %$r) eq 'answer,job,ok' && $r->{answer} eq "got m$i";
			} else {
				my @rcpts = @{ $r->{job}{recipients} };
				$bad++ unless $r->{result} && @{ $r->{responses} } == @rcpts;
				$bad++ unless $r->{result}{ $rcpts[-1] } eq ($refused ? 'failure: no' : "success: got m$i");
			}
		});
		is($oks, 160, "lean $lean: ok for the 160 accepted");
		ok(!$bad, "lean $lean: ok false for the refused ones, and each result in its form");
	}
});

case('jobs as an array reference, left as it was', 30, sub {
	my $srv = echo_server();
	my $q = client($srv);
	my @jobs = map { { sender => 's@x', recipients => ['a@x'], message => "m$_" } } 0 .. 9;
	my @copy = map { { %$_, recipients => [ @{ $_->{recipients} } ] } } @jobs;
	my $got = 0;
	is($q->send_stream(jobs => \@jobs, on_result => sub { $got++ if $_[0]{result}{'a@x'} eq "success: got m$_[1]" }), 10,
		'ten jobs');
	is($got, 10, 'ten results');
	is_deeply(\@jobs, \@copy, 'the array and its jobs are not changed');
	is($q->send_stream(jobs => [], on_result => sub { fail('no result for no job') }), 0, 'an empty stream: 0');
});

case('the window bounds what is held, by jobs and by bytes', 60, sub {
	my $srv = echo_server();
	my $q = client($srv);
	my ($given, $max) = (0, 0);
	my $done = 0;
	$q->send_stream(jobs => jobs(500, \$given), window => 7, on_result => sub {
		$max = $given - $done if $given - $done > $max;
		$done++;
	});
	is($done, 500, 'every job reported');
	ok($max <= 7, "at most 7 jobs taken and not yet reported (saw $max)");
	ok($max == 7, 'the window is used in full');

	($given, $max, $done) = (0, 0, 0);
	my $big = 'x' x 3000;
	$q->send_stream(jobs => jobs(60, \$given, message => $big), window => 1000, window_bytes => 10_000,
		on_result => sub { $max = $given - $done if $given - $done > $max; $done++ });
	is($done, 60, 'by bytes: every job reported');
	ok($max <= 4, "by bytes: a window of 10000 bytes holds at most 4 jobs of 3000 (saw $max)");
});

case('stopping from on_result', 60, sub {
	my $srv = echo_server();
	my $q = client($srv);
	my ($given, $done) = (0, 0);
	my $n = $q->send_stream(jobs => jobs(1000, \$given), window => 5, on_result => sub {
		my ($r, $i, $stop) = @_;
		$done++;
		$stop->() if $i == 11;
	});
	is($given, 15, 'no job is taken after the window in which stop was called');
	is($done, 15, 'every job taken is reported, also those after the stop');
	is($n, 15, 'the count says so');
	is($q->error, undef, 'a stop is not an error');
	is(scalar(() = $srv->packages(0)), 15, 'the server got the 15');
});

case('a hang-up after k answers in the middle of the stream', 60, sub {
	# Connection 0 answers 25 packages, then hangs up; later ones behave.
	my $srv = echo_server(script => sub {
		my ($c, $conn) = @_;
		my $k = 0;
		while (my $pkg = $c->read_package) {
			if ($conn == 0 && ++$k > 25) { $c->close; return }
			$c->respond(map { "Kgot $pkg->{message}" } @{ $pkg->{recipients} }) or last;
		}
	});
	my $q = client($srv);
	my (%result, $false);
	my $n = $q->send_stream(jobs => jobs(100), window => 10, on_result => sub {
		my ($r, $i) = @_;
		$result{$i} = $r;
	});
	is($n, 100, 'every job taken');
	is(scalar keys %result, 100, 'every job reported');
	# The oracle: what each connection's script answered K for.
	my %answered;
	my $conns = $srv->connections;
	for my $conn (0 .. $conns - 1) {
		my @pkgs = $srv->packages($conn);
		@pkgs = @pkgs[0 .. 24] if $conn == 0 && @pkgs > 25;
		$answered{ $_->{message} }++ for @pkgs;
	}
	for my $i (sort { $a <=> $b } keys %result) {
		my $r = $result{$i};
		next unless $r->{result};
		for my $v (values %{ $r->{result} }) {
			$false++ if $v =~ /^success: / && !($answered{"m$i"} && $v eq "success: got m$i");
		}
	}
	ok(!$false, 'no success the server did not give for that job');
	my @ok = grep { $result{$_}{result} && !grep { !/^success: / } values %{ $result{$_}{result} } } keys %result;
	cmp_ok(scalar @ok, '>=', 90, 'the jobs after the hang-up went on a new connection (' . @ok . ' of 100 succeeded)');
	my @deferred = grep { $result{$_}{result} && grep { /^deferral: no response received/ } values %{ $result{$_}{result} } } keys %result;
	ok(@deferred >= 1, 'the jobs written but unanswered are deferrals (' . @deferred . ')');
	like($q->error, qr/closed|reset|no response|did not match/i, 'error() says what happened');
});

case('a stall past Timeout stops the stream', 60, sub {
	my $srv = echo_server(script => sub {
		my ($c) = @_;
		my $k = 0;
		while (my $pkg = $c->read_package) {
			if (++$k == 13) { $c->sleep(6); return }
			$c->respond(map { "Kgot $pkg->{message}" } @{ $pkg->{recipients} }) or last;
		}
	});
	my $q = client($srv, Timeout => 1);
	my ($given, $done, @lost) = (0, 0);
	my $t0 = Time::HiRes::time();
	my $n = $q->send_stream(jobs => jobs(1000, \$given), window => 5, on_result => sub {
		my ($r, $i) = @_;
		$done++;
		push @lost, $i unless $r->{result} && !grep { !/^success: / } values %{ $r->{result} };
	});
	my $took = Time::HiRes::time() - $t0;
	is($given, 15, 'no window after the one that timed out');
	is($done, 15, 'every job taken is reported');
	is($n, 15, 'the count says so');
	is_deeply([ $lost[0] ], [12], 'the job the server stalled on is the first not accepted');
	like($q->error, qr/timed out/, 'error() says it timed out');
	cmp_ok($took, '<', 5, 'within Timeout, not the stall');
});

case('a server that answers no job of a window stops the stream', 60, sub {
	# Ten answers on the first connection, then every connection is closed
	# at once: the jobs after the ten cannot begin.
	my $srv = echo_server(script => sub {
		my ($c, $conn) = @_;
		return $c->close if $conn > 0;
		for (1 .. 10) {
			my $pkg = $c->read_package or return;
			$c->respond(map { "Kgot $pkg->{message}" } @{ $pkg->{recipients} }) or return;
		}
		$c->close;
	});
	my $q = client($srv);
	my ($given, @r) = (0);
	my $n = $q->send_stream(jobs => jobs(1000, \$given), window => 10, on_result => sub { push @r, $_[0] });
	cmp_ok($given, '<=', 20, "the stream stopped ($given taken)");
	is(scalar @r, $given, 'every job taken is reported');
	is(scalar(grep { $_->{result} && $_->{result}{'a@x'} =~ /^success: / } @r), 10, 'the first ten succeeded');
	my @rest = @r[10 .. $#r];
	ok(@rest && !(grep { $_->{result} ? grep { !/^deferral: / } values %{ $_->{result} } : $_->{error} !~ /^not sent: / } @rest),
		'the rest are deferrals or "not sent"');
	ok(defined $q->error, 'error() says why it stopped: ' . ($q->error || ''));
});

case('the iterator may reuse its hash and message, or free the last one', 30, sub {
	my $srv = echo_server();
	my $q = client($srv);
	my %h = (sender => 's@x');
	my $i = 0;
	my @got;
	$q->send_stream(window => 3, jobs => sub {
		return undef if $i >= 6;
		$h{recipients} = ["r$i\@x"];
		$h{message} = "m$i";
		$i++;
		return \%h;
	}, on_result => sub { push @got, $_[0]{result}{ "r$_[1]\@x" } });
	is_deeply(\@got, [ map { "success: got m$_" } 0 .. 5 ], 'one hash reused: each job sent with its own message');
	is_deeply([ map { $_->{message} } $srv->packages(0) ], [ map { "m$_" } 0 .. 5 ], '... as the server got them');

	my ($prev, $n, $died) = (undef, 0);
	my @ok;
	eval {
		$q->send_stream(window => 4, jobs => sub {
			$prev->{message} = undef if $prev; # done with it, as far as the caller knows
			return undef if $n >= 4;
			return $prev = { sender => 's@x', recipients => ['a@x'], message => 'f' . $n++ };
		}, on_result => sub { push @ok, $_[0]{result}{'a@x'} });
		1;
	} or $died = $@;
	is($died, undef, 'an iterator that undefines the last job\'s message: no die');
	is_deeply(\@ok, [ map { "success: got f$_" } 0 .. 3 ], '... every job sent as it was given');
});

case('an iterator that dies: the jobs it gave are sent and reported first', 30, sub {
	my $srv = echo_server();
	my $q = client($srv);
	my $i = 0;
	my @done;
	eval {
		$q->send_stream(window => 10, on_result => sub { push @done, $_[1] }, jobs => sub {
			die "disk error\n" if $i == 3;
			return { sender => 's@x', recipients => ['a@x'], message => 'd' . $i++ };
		});
	};
	is($@, "disk error\n", 'its die goes on, unchanged');
	is_deeply(\@done, [0, 1, 2], 'the three jobs it gave were reported');
	is(scalar(() = $srv->packages(0)), 3, '... and sent');
});

case('a malformed job dies naming its place, after the ones before it', 30, sub {
	my $srv = echo_server();
	my $q = client($srv);
	my $i = 0;
	my @jobs = map { { sender => 's@x', recipients => ['a@x'], message => "m$_" } } 0 .. 9;
	$jobs[6] = { sender => 's@x', recipients => [], message => 'bad' };
	my @done;
	eval { $q->send_stream(jobs => \@jobs, window => 4, on_result => sub { push @done, $_[1] }) };
	my $line = __LINE__ - 1;
	like($@, qr/\Asend_stream: job 7: recipients must be a non-empty array reference at \Q$0\E line $line\.$/,
		'the croak names job 7 and the caller\'s line');
	is_deeply(\@done, [0 .. 5], 'jobs 1 to 6 were sent and reported first');
	is(scalar(() = $srv->packages(0)), 6, 'the server got those six');

	for my $bad (
		[ [ jobs => 'x', on_result => sub {} ], qr/jobs must be a code reference/ ],
		[ [ jobs => [], on_result => 1 ], qr/on_result must be a code reference/ ],
		[ [ jobs => [], on_result => sub {}, window => 0 ], qr/window must be a number of jobs/ ],
		[ [ jobs => [], on_result => sub {}, window_bytes => '1k' ], qr/window_bytes must be a whole number/ ],
		[ [ jobs => [], on_result => sub {}, windows => 2 ], qr/unknown option 'windows'/ ],
		[ [ jobs => [] ], qr/on_result must be a code reference/ ],
	) {
		eval { $q->send_stream(@{ $bad->[0] }) };
		like($@, qr/\Asend_stream: ${\ $bad->[1]}.* at \Q$0\E line \d+\.$/, "bad options: $bad->[1]");
	}
	eval { Net::QMTP->send_stream(jobs => [], on_result => sub {}) };
	like($@, qr/send_stream/, 'a class method call dies');
});

SKIP: {
	skip 'the million-job run is a soak test (NET_QMTP_SOAK=1)', 1 unless $ENV{NET_QMTP_SOAK};
	skip 'not under valgrind', 1 if $ENV{NET_QMTP_VALGRIND};
	case('a million jobs in flat memory', 300, sub {
		require Test::Sink;
		my $sink = Test::Sink->start;
		my $q = Net::QMTP->new('127.0.0.1', Port => $sink->port, Answers => 'recipient') or die $@;
		my $msg = 'x' x 1023 . "\n";
		my ($i, $ok, %hwm) = (0, 0);
		my $n = 1_000_000;
		$q->send_stream(jobs => sub { $i++ < $n ? { sender => 's@x', recipients => ['a@x'], message => $msg } : undef },
			on_result => sub {
				$ok++ if $_[0]{result} && $_[0]{result}{'a@x'} =~ /^success: /;
				$hwm{ $_[1] } = peak_kb() if $_[1] == 100_000 || $_[1] == $n - 1;
			});
		is($ok, $n, 'a million successes');
		my $growth = $hwm{ $n - 1 } - $hwm{100_000};
		cmp_ok($growth, '<', 4096, "peak memory grew by $growth kB from job 100000 to the millionth");
		cmp_ok($hwm{ $n - 1 }, '<', 64 * 1024, "peak memory $hwm{ $n - 1 } kB is under 64 MiB");
	});
}

sub peak_kb {
	open my $fh, '<', "/proc/$$/status" or return 0;
	while (<$fh>) { return $1 if /^VmHWM:\s+(\d+)/ }
	return 0;
}

done_testing;

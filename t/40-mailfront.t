#!perl
# Interoperability with the real QMTP server mailfront (run under tcpserver
# on 127.0.0.1 by t/lib/Test/Mailfront.pm): what Net::QMTP sends must land
# in mailfront's queue byte for byte, and mailfront's deviations from the
# spec (one answer per package, no CRLF encoding) must be handled as the
# manual says.  The 50 MiB streaming case is in t/41-mailfront-large.t.

use strict;
use warnings;

# A hang must fail the test, not block the suite.  The default action of
# SIGALRM is kept on purpose: it kills the test whatever the client is
# doing, and the harness's watchdog cleans up after a killed test.
alarm 240;

use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes ();

use lib 't/lib';
use Test::Mailfront;

Test::Mailfront->require_or_skip;

use Net::QMTP;

my $ACCEPTED = 'success: 2.6.0 Message accepted.';

# ---------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------

# What mailfront's queuedir backend writes for one message.
sub raw_of {
	my ($sender, $rcpts, $message) = @_;
	return "$sender\0" . join('', map { "$_\0" } @$rcpts) . $message;
}

sub printable {
	my ($s) = @_;
	$s =~ s/([^\x20-\x7e])/sprintf('\\x%02x', ord $1)/ge;
	return $s;
}

# Byte-exact comparison with a readable report of the first difference.
sub is_bytes {
	my ($got, $want, $name) = @_;
	if (defined $got && $got eq $want) {
		return pass($name);
	}
	fail($name);
	if (!defined $got) {
		diag('got undef');
		return 0;
	}
	my $i = 0;
	$i++ while $i < length($got) && $i < length($want)
		&& substr($got, $i, 1) eq substr($want, $i, 1);
	my $from = $i > 20 ? $i - 20 : 0;
	diag(sprintf("lengths: got %d, expected %d; first difference at byte %d\n"
			. "  got:      ...%s\n  expected: ...%s",
		length $got, length $want, $i,
		printable(substr($got, $from, 60)), printable(substr($want, $from, 60))));
	return 0;
}

sub client {
	my ($mf, %opt) = @_;
	my $q = Net::QMTP->new('127.0.0.1', Port => $mf->port, Timeout => 30, %opt);
	BAIL_OUT("cannot connect to mailfront on port " . $mf->port . ": $@") unless $q;
	return $q;
}

# Sets a fresh envelope and message on $q.
sub envelope {
	my ($q, $sender, $rcpts, $message) = @_;
	$q->new_envelope;
	$q->new_message;
	$q->sender($sender);
	$q->recipient($_) for @$rcpts;
	$q->message($message) if defined $message;
}

# Checks send()'s hash and responses() for a message every recipient of
# which should get exactly $want (e.g. "success: ..."), $code being the
# status byte.
sub check_result {
	my ($q, $result, $rcpts, $want, $code, $name) = @_;
	ok(ref $result eq 'HASH', "$name: send() returns a hash reference")
		or diag('error(): ' . (defined $q->error ? $q->error : 'undef'));
	$result = {} unless ref $result eq 'HASH';
	is($q->error, undef, "$name: error() is undef after send() returned its hash");
	my %uniq = map { $_ => 1 } @$rcpts;
	is_deeply([ sort keys %$result ], [ sort keys %uniq ], "$name: one key per distinct recipient");
	for my $r (sort keys %uniq) {
		is($result->{$r}, $want, "$name: answer for <$r>");
	}
	my $resp = $q->responses;
	is(ref $resp, 'ARRAY', "$name: responses() is an array reference");
	$resp = [] unless ref $resp eq 'ARRAY';
	is(scalar @$resp, scalar @$rcpts, "$name: responses() has one entry per recipient");
	is_deeply([ map { $_->{recipient} } @$resp ], $rcpts,
		"$name: responses() in recipient order, duplicates kept");
	is_deeply([ map { $_->{code} } @$resp ], [ ($code) x @$rcpts ], "$name: every code is '$code'");
	is_deeply([ map { $_->{response} } @$resp ], [ ($want) x @$rcpts ],
		"$name: every response is the hash's value");
	return $resp;
}

# The one message in the queue (waiting for it), or undef.
sub the_queued {
	my ($mf, $name) = @_;
	$mf->wait_queued(1, 10);
	my @q = $mf->queued;
	is(scalar @q, 1, "$name: exactly one message queued");
	return $q[0];
}

# Gives mailfront a moment, then checks that nothing was queued.
sub nothing_queued {
	my ($mf, $name) = @_;
	Time::HiRes::sleep(0.2);
	my @q = $mf->queued;
	is(scalar @q, 0, "$name: nothing queued")
		or diag(join "\n", map { printable($_->{raw}) } @q);
}

# pids of the mailfront processes that received a sender, one per package,
# in the log after byte offset $from.
sub packages_in_log {
	my ($mf, $from) = @_;
	my $log = $mf->log;
	$log = length($log) > $from ? substr($log, $from) : '';
	return $log =~ /^mailfront\[(\d+)\]: sender </mg;
}

sub distinct {
	my %seen;
	return grep { !$seen{$_}++ } @_;
}

my $tmp = tempdir('net-qmtp-40-XXXXXX', TMPDIR => 1, CLEANUP => 1);

sub spit {
	my ($file, $data) = @_;
	open my $fh, '>', $file or die "$file: $!";
	binmode $fh;
	print {$fh} $data or die "$file: $!";
	close $fh or die "$file: $!";
}

my $mf = Test::Mailfront->start(plugins => ['accept']);

# ---------------------------------------------------------------------
# 1. Messages land byte for byte
# ---------------------------------------------------------------------

subtest 'messages land byte for byte' => sub {
	my $q = client($mf);

	# NUL bytes (also in the first line, where queued() would misparse),
	# every 8-bit byte, CRLF line ends, no final newline; duplicates.
	my $body = "Subject: \0bin\x80ary\r\n"
		. "X-Nul: a\0b\0\0c\r\n"
		. "\r\n"
		. join('', map { chr } 0x80 .. 0xff) . "\r\n"
		. "line\rwith lone CR and lone LF\n"
		. "\0\0\0 last line without newline \xff";
	my @rcpts = ('a@example.org', 'b@example.org', 'a@example.org', 'c@example.org', 'a@example.org');
	$mf->clear;
	envelope($q, 'sender@example.org', \@rcpts, $body);
	my $r = $q->send;
	check_result($q, $r, \@rcpts, $ACCEPTED, 'K', 'binary body, duplicate recipients');
	my $got = the_queued($mf, 'binary body');
	is_bytes($got && $got->{raw}, raw_of('sender@example.org', \@rcpts, $body),
		'binary body: queue file is byte-exact (duplicates stored too)');

	# An empty message.
	$mf->clear;
	envelope($q, 's@example.org', ['r@example.org'], '');
	is($q->message, '', "message('') makes an empty message");
	$r = $q->send;
	check_result($q, $r, ['r@example.org'], $ACCEPTED, 'K', 'empty message');
	$got = the_queued($mf, 'empty message');
	is_bytes($got && $got->{raw}, raw_of('s@example.org', ['r@example.org'], ''),
		'empty message: queue file is byte-exact');

	# The empty (bounce) sender.
	$mf->clear;
	my $bounce = "From: MAILER-DAEMON\n\nbounce\n";
	envelope($q, '', ['r@example.org'], $bounce);
	is($q->sender, '', "sender('') is kept as the empty sender");
	$r = $q->send;
	check_result($q, $r, ['r@example.org'], $ACCEPTED, 'K', 'empty sender');
	$got = the_queued($mf, 'empty sender');
	is_bytes($got && $got->{raw}, raw_of('', ['r@example.org'], $bounce),
		'empty sender: queue file is byte-exact');

	# Both at once, with duplicates.
	$mf->clear;
	envelope($q, '', ['x@example.org', 'x@example.org'], '');
	$r = $q->send;
	check_result($q, $r, ['x@example.org', 'x@example.org'], $ACCEPTED, 'K',
		'empty sender, empty message, duplicate');
	$got = the_queued($mf, 'empty sender and message');
	is_bytes($got && $got->{raw}, raw_of('', ['x@example.org', 'x@example.org'], ''),
		'empty sender and message: queue file is byte-exact');
	$q->disconnect;
};

# ---------------------------------------------------------------------
# 2. One answer per package: no stall waiting for N answers
# ---------------------------------------------------------------------

subtest 'mailfront answers once per package' => sub {
	my @rcpts = map { "r$_\@example.org" } 1 .. 5;
	my $msg = "Subject: five\n\nfive recipients\n";
	# A new object first: nothing learnt yet about the server.
	my $q5 = client($mf);
	for my $round (1, 2) {
		my $name = $round == 1 ? 'fresh object' : 'same object again';
		$mf->clear;
		envelope($q5, 's@example.org', \@rcpts, $msg);
		my $t0 = Time::HiRes::time();
		my $r = $q5->send;
		my $took = Time::HiRes::time() - $t0;
		note(sprintf '%s: send() took %.3f s', $name, $took);
		cmp_ok($took, '<', 2, "$name: send() to 5 recipients returns within 2 s")
			or diag(sprintf 'took %.3f s', $took);
		my $resp = check_result($q5, $r, \@rcpts, $ACCEPTED, 'K', $name);
		is_deeply([ map { $_->{per_package} } @$resp ], [ (1) x 5 ], "$name: per_package == 1 for all");
		is_deeply([ map { $_->{received} } @$resp ], [ (1) x 5 ], "$name: received == 1 for all");
		is_deeply([ map { $_->{text} } @$resp ], [ ('2.6.0 Message accepted.') x 5 ], "$name: text");
		my $got = the_queued($mf, $name);
		is_bytes($got && $got->{raw}, raw_of('s@example.org', \@rcpts, $msg), "$name: queued byte-exact");
	}
};

# ---------------------------------------------------------------------
# 3. DATABYTES limit (counters plugin)
# ---------------------------------------------------------------------

subtest 'DATABYTES limit' => sub {
	my $lim = Test::Mailfront->start(plugins => ['counters', 'accept'], env => { DATABYTES => 100 });
	my $q = client($lim);
	my $big = "Subject: big\n\n" . ('x' x 185) . "\n";
	is(length $big, 200, 'the message is 200 bytes');
	my $want = 'failure: 5.2.3 Sorry, that message exceeds the maximum message length.';

	envelope($q, 's@example.org', ['r@example.org'], $big);
	my $r = $q->send;
	check_result($q, $r, ['r@example.org'], $want, 'D', 'one recipient');
	nothing_queued($lim, 'one recipient over DATABYTES');

	my @two = ('r1@example.org', 'r2@example.org');
	envelope($q, 's@example.org', \@two, $big);
	$r = $q->send;
	my $resp = check_result($q, $r, \@two, $want, 'D', 'two recipients');
	is_deeply([ map { $_->{per_package} } @$resp ], [ 1, 1 ], 'two recipients: the one answer is per package');
	nothing_queued($lim, 'two recipients over DATABYTES');

	# Under the limit, the same server and object accept.
	my $small = "Subject: small\n\nok\n";
	envelope($q, 's@example.org', ['r@example.org'], $small);
	$r = $q->send;
	check_result($q, $r, ['r@example.org'], $ACCEPTED, 'K', 'under the limit');
	my $got = the_queued($lim, 'under the limit');
	is_bytes($got && $got->{raw}, raw_of('s@example.org', ['r@example.org'], $small),
		'under the limit: queued byte-exact');
	undef $q;
	$lim->stop;
};

# ---------------------------------------------------------------------
# 4. dos encoding: mailfront defers; a unix send afterwards works
# ---------------------------------------------------------------------

subtest 'dos encoding' => sub {
	$mf->clear;
	my $q = client($mf);
	my $msg = "Subject: dos\r\n\r\nCRLF text\r\n";
	envelope($q, 's@example.org', ['r@example.org'], $msg);
	is($q->encoding('dos'), "\015", "encoding('dos') is CR");
	my $r = $q->send;
	my $resp = check_result($q, $r, ['r@example.org'], 'deferral: Cannot handle non-LF line terminator', 'Z',
		'dos encoding');
	is($resp->[0]{received}, 1, 'dos encoding: the deferral came from the server');
	is($resp->[0]{text}, 'Cannot handle non-LF line terminator', 'dos encoding: text');
	nothing_queued($mf, 'dos encoding');

	# mailfront hung up; the next send() on the same object reconnects.
	is($q->encoding('unix'), "\012", "encoding('unix') is LF");
	$r = $q->send;
	check_result($q, $r, ['r@example.org'], $ACCEPTED, 'K', 'unix after dos');
	my $got = the_queued($mf, 'unix after dos');
	is_bytes($got && $got->{raw}, raw_of('s@example.org', ['r@example.org'], $msg),
		'unix after dos: queued byte-exact (bytes not converted)');
	$q->disconnect;
};

# ---------------------------------------------------------------------
# 5. Many messages over one connection
# ---------------------------------------------------------------------

subtest 'twenty messages over one connection' => sub {
	$mf->clear;
	my $log_from = length $mf->log;
	my $q = client($mf, Debug => 0);
	my @sent;
	my $all_ok = 1;
	for my $i (1 .. 20) {
		my $rcpt = "rcpt$i\@example.org";
		my $msg = "Subject: message $i\n\nThis is message number $i.\n";
		envelope($q, "sender$i\@example.org", [$rcpt], $msg);
		my $r = $q->send;
		unless (ref $r eq 'HASH' && defined $r->{$rcpt} && $r->{$rcpt} eq $ACCEPTED) {
			$all_ok = 0;
			diag("message $i: " . (ref $r eq 'HASH' ? $r->{$rcpt} : 'undef, error: ' . ($q->error || '')));
		}
		push @sent, raw_of("sender$i\@example.org", [$rcpt], $msg);
	}
	ok($all_ok, 'all 20 send()s succeed');
	ok($mf->wait_queued(20, 10), '20 messages queued');
	my @q = $mf->queued;
	is(scalar @q, 20, 'exactly 20 queue files');
	is_deeply([ map { printable($_->{raw}) } @q ], [ map { printable($_) } @sent ],
		'queued in order, byte-exact');

	my @pkgs = packages_in_log($mf, $log_from);
	is(scalar @pkgs, 20, 'mailfront logged 20 packages');
	is(scalar(distinct(@pkgs)), 1, 'single-recipient messages all went over one connection (one mailfront session)')
		or diag("sessions: @{[distinct(@pkgs)]}");

	# A multi-recipient message ends the connection (documented); single
	# recipient messages after it share the next one.
	$log_from = length $mf->log;
	$mf->clear;
	envelope($q, 's@example.org', ['a@example.org', 'b@example.org'], "two\n");
	my $r = $q->send;
	check_result($q, $r, ['a@example.org', 'b@example.org'], $ACCEPTED, 'K', 'multi-recipient');
	for my $i (1, 2) {
		envelope($q, 's@example.org', ['a@example.org'], "single $i\n");
		$r = $q->send;
		is($r && $r->{'a@example.org'}, $ACCEPTED, "single-recipient message $i after it");
	}
	@pkgs = packages_in_log($mf, $log_from);
	is(scalar @pkgs, 3, 'mailfront logged 3 packages');
	SKIP: {
		skip 'packages missing from the log', 2 unless @pkgs == 3;
		isnt($pkgs[1], $pkgs[0], 'the message after a multi-recipient one is on a new connection');
		is($pkgs[2], $pkgs[1], 'the next single-recipient message reuses that connection');
	}
	ok($mf->wait_queued(3, 10), '3 messages queued');
	is_deeply([ map { $_->{raw} } $mf->queued ],
		[ raw_of('s@example.org', ['a@example.org', 'b@example.org'], "two\n"),
		  raw_of('s@example.org', ['a@example.org'], "single 1\n"),
		  raw_of('s@example.org', ['a@example.org'], "single 2\n") ],
		'the three messages queued in order');
	$q->disconnect;
};

# ---------------------------------------------------------------------
# 5b. BusyWait changes how answers are waited for, not what happens
# ---------------------------------------------------------------------

subtest 'BusyWait off and at its longest' => sub {
	for my $busy (0, 0.01) {
		$mf->clear;
		my $q = client($mf, BusyWait => $busy);
		my @sent;
		for my $i (1 .. 5) {
			my $msg = "Subject: busy $busy, $i\n\nbody $i\n";
			envelope($q, 's@example.org', ["r$i\@example.org"], $msg);
			my $r = $q->send;
			is($r && $r->{"r$i\@example.org"}, $ACCEPTED, "BusyWait $busy: message $i accepted");
			push @sent, raw_of('s@example.org', ["r$i\@example.org"], $msg);
		}
		my @rcpts = ('a@example.org', 'b@example.org', 'c@example.org');
		envelope($q, 's@example.org', \@rcpts, "three\n");
		check_result($q, $q->send, \@rcpts, $ACCEPTED, 'K', "BusyWait $busy, three recipients");
		push @sent, raw_of('s@example.org', \@rcpts, "three\n");
		ok($mf->wait_queued(6, 10), "BusyWait $busy: 6 messages queued");
		is_deeply([ map { printable($_->{raw}) } $mf->queued ], [ map { printable($_) } @sent ],
			"BusyWait $busy: queued in order, byte-exact");
		$q->disconnect;
	}
};

# ---------------------------------------------------------------------
# 6. message_from_file, small (the 50 MiB case is t/41)
# ---------------------------------------------------------------------

subtest 'message_from_file' => sub {
	$mf->clear;
	my $file = "$tmp/small.eml";
	my $body = "\0Subject: from a file\r\n\r\n" . join('', map { chr } 0 .. 255) . "\nend \0 \xfe";
	my $q = client($mf);
	envelope($q, 's@example.org', ['r@example.org', 'r2@example.org']);
	# The file is read at send() time: it need not exist yet.
	is($q->message_from_file($file), $file, 'message_from_file(FILE) returns the name');
	is($q->message_from_file, $file, 'message_from_file() returns the name');
	spit($file, $body);
	my $r = $q->send;
	check_result($q, $r, ['r@example.org', 'r2@example.org'], $ACCEPTED, 'K', 'small file');
	my $got = the_queued($mf, 'small file');
	is_bytes($got && $got->{raw}, raw_of('s@example.org', ['r@example.org', 'r2@example.org'], $body),
		'small file: queued byte-exact');

	# An empty file is an empty message.
	$mf->clear;
	my $empty = "$tmp/empty.eml";
	spit($empty, '');
	envelope($q, 's@example.org', ['r@example.org']);
	$q->message_from_file($empty);
	$r = $q->send;
	check_result($q, $r, ['r@example.org'], $ACCEPTED, 'K', 'empty file');
	$got = the_queued($mf, 'empty file');
	is_bytes($got && $got->{raw}, raw_of('s@example.org', ['r@example.org'], ''), 'empty file: queued byte-exact');
	$q->disconnect;
};

# ---------------------------------------------------------------------
# 7. Without the accept plugin every sender is refused
# ---------------------------------------------------------------------

subtest 'mailfront without accept' => sub {
	my $none = Test::Mailfront->start(plugins => []);
	my $q = client($none);
	my $want = 'failure: 5.1.0 Mail system is not configured to accept that sender';
	envelope($q, 's@example.org', ['r@example.org'], "Subject: x\n\nx\n");
	my $r = $q->send;
	my $resp = check_result($q, $r, ['r@example.org'], $want, 'D', 'one recipient');
	is($resp->[0]{received}, 1, 'one recipient: the answer came from the server');
	nothing_queued($none, 'one recipient, sender refused');

	my @three = ('a@example.org', 'b@example.org', 'a@example.org');
	envelope($q, 's@example.org', \@three, "Subject: x\n\nx\n");
	$r = $q->send;
	check_result($q, $r, \@three, $want, 'D', 'three recipients');
	nothing_queued($none, 'three recipients, sender refused');
	undef $q;
	$none->stop;
};

# ---------------------------------------------------------------------
# 8. The session limit is enforced by the client
# ---------------------------------------------------------------------

subtest 'SessionLimit' => sub {
	$mf->clear;
	my $log_from = length $mf->log;
	my $q = client($mf, SessionLimit => 0.5);
	envelope($q, 's@example.org', ['r@example.org'], "first\n");
	my $r = $q->send;
	is($r && $r->{'r@example.org'}, $ACCEPTED, 'first send succeeds');
	Time::HiRes::sleep(0.7);
	$q->new_message;
	$q->message("second\n");
	$r = $q->send;
	is($r && $r->{'r@example.org'}, $ACCEPTED, 'second send, 0.7 s later, succeeds')
		or diag('error: ' . ($q->error || ''));
	my @pkgs = packages_in_log($mf, $log_from);
	is(scalar @pkgs, 2, 'mailfront logged 2 packages');
	is(scalar(distinct(@pkgs)), 2, 'the second went over a new connection');
	ok($mf->wait_queued(2, 10), 'both queued');
	is_deeply([ map { $_->{raw} } $mf->queued ],
		[ raw_of('s@example.org', ['r@example.org'], "first\n"),
		  raw_of('s@example.org', ['r@example.org'], "second\n") ], 'both queued byte-exact, in order');
	$q->disconnect;
};

# ---------------------------------------------------------------------
# 9. Wide characters
# ---------------------------------------------------------------------

subtest 'wide characters' => sub {
	$mf->clear;
	my $log_from = length $mf->log;
	my $q = client($mf);
	my $here = qr/ at \S*40-mailfront\.t line \d+/;

	ok(!eval { $q->sender("smiley\x{263a}\@example.org"); 1 }, 'wide sender dies');
	like($@, qr/^Wide character in sender: encode it to bytes first \(e\.g\. with Encode::encode_utf8\)$here/, 'wide sender: message and caller location');
	ok(!defined $q->sender, 'wide sender: sender stays unset');

	ok(!eval { $q->recipient("r\x{100}\@example.org"); 1 }, 'wide recipient dies');
	like($@, qr/^Wide character in recipient: encode it to bytes first \(e\.g\. with Encode::encode_utf8\)$here/, 'wide recipient: message and caller location');
	is_deeply($q->recipient, [], 'wide recipient: not added');

	ok(!eval { $q->message("Subject: \x{20ac}\n\n"); 1 }, 'wide message dies');
	like($@, qr/^Wide character in message: encode it to bytes first \(e\.g\. with Encode::encode_utf8\)$here/, 'wide message: message and caller location');
	ok(!defined $q->message, 'wide message: message stays unset');

	$q->sender('s@example.org');
	$q->recipient('r@example.org');
	$q->message("part one\n");
	ok(!eval { $q->message("part \x{3a9}\n"); 1 }, 'appending a wide string dies');
	like($@, qr/^Wide character in message: encode it to bytes first \(e\.g\. with Encode::encode_utf8\)$here/, 'appending: message and caller location');
	is($q->message, "part one\n", 'appending: the message is unchanged');

	Time::HiRes::sleep(0.2);
	my @pkgs = packages_in_log($mf, $log_from);
	is(scalar @pkgs, 0, 'nothing reached the server');
	is(scalar($mf->queued), 0, 'nothing queued');

	# The object is still usable, and sends only the byte-string parts.
	my $r = $q->send;
	check_result($q, $r, ['r@example.org'], $ACCEPTED, 'K', 'after the croaks');
	my $got = the_queued($mf, 'after the croaks');
	is_bytes($got && $got->{raw}, raw_of('s@example.org', ['r@example.org'], "part one\n"),
		'after the croaks: queued byte-exact');

	# utf8-flagged strings that fit in latin-1 go out as latin-1 bytes.
	$mf->clear;
	my $sender = "caf\xe9\@example.org";
	my $rcpt = "na\xefve\@example.org";
	my $msg = "Subject: caf\xe9\n\nd\xe9j\xe0 vu \xff\n";
	my ($us, $ur, $um) = ($sender, $rcpt, $msg);
	utf8::upgrade($_) for $us, $ur, $um;
	ok(utf8::is_utf8($us) && utf8::is_utf8($ur) && utf8::is_utf8($um), 'the strings are utf8-flagged');
	envelope($q, $us, [$ur], $um);
	$r = $q->send;
	check_result($q, $r, [$rcpt], $ACCEPTED, 'K', 'upgraded latin-1');
	$got = the_queued($mf, 'upgraded latin-1');
	is_bytes($got && $got->{raw}, raw_of($sender, [$rcpt], $msg),
		'upgraded latin-1: queued as latin-1 bytes');

	# A mix of flagged and unflagged appends.
	$mf->clear;
	my $part2 = "\xe9t\xe9\n";
	utf8::upgrade($part2);
	envelope($q, 's@example.org', ['r@example.org'], "\xe0 ");
	$q->message($part2);
	$r = $q->send;
	is($r && $r->{'r@example.org'}, $ACCEPTED, 'mixed appends: accepted');
	$got = the_queued($mf, 'mixed appends');
	is_bytes($got && $got->{raw}, raw_of('s@example.org', ['r@example.org'], "\xe0 \xe9t\xe9\n"),
		'mixed appends: queued as latin-1 bytes');
	$q->disconnect;
};

$mf->stop;
done_testing;

#!perl
# qmtp-send --maildir (Net::QMTP::Maildir): flushing a serialmail-style
# maildir, end to end against mailfront, plus a scripted fake server for
# what mailfront will not do.

use strict;
use warnings;
use lib 't/lib';

use Test::More;
use File::Temp qw(tempdir);
use Fcntl qw(:flock);
use IO::Socket::INET;
use POSIX ();
use Time::HiRes ();
use Test::Mailfront;
use Test::QMTPServer;
use Net::QMTP::Maildir;

Test::Mailfront::require_or_skip();

my $DAY = 24 * 3600;
my $n = 0;

sub spit {
	my ($file, $data) = @_;
	open my $fh, '>', $file or die "$file: $!";
	binmode $fh;
	print $fh $data;
	close $fh or die "$file: $!";
}

sub slurp {
	my ($file) = @_;
	open my $fh, '<', $file or return undef;
	binmode $fh;
	local $/;
	return scalar <$fh>;
}

sub maildir {
	my $d = tempdir('maildir-XXXXXX', TMPDIR => 1, CLEANUP => 1);
	mkdir "$d/$_" or die for qw(tmp new cur);
	return $d;
}

# A message file; returns its path relative to the maildir.
sub put {
	my ($dir, %m) = @_;
	my $sub = $m{cur} ? 'cur' : 'new';
	my $t = $m{time} || time;
	my $name = sprintf '%d.M%dP%d.test%s', $t, ++$n, $$, $m{cur} ? ':2,S' : '';
	my $data = defined $m{raw} ? $m{raw}
		: "Return-Path: <$m{sender}>\nDelivered-To: $m{rcpt}\n" . $m{body};
	spit("$dir/$sub/$name", $data);
	utime $t, $t, "$dir/$sub/$name" if $m{time};
	return "$sub/$name";
}

sub body {
	my ($tag, $extra) = @_;
	return "From: someone\@example.org\nSubject: $tag\nDelivered-To: earlier\@example.org\n\nBody of $tag.\n"
		. (defined $extra ? $extra : '');
}

# run_cli with stdout and stderr captured.
sub cli {
	my ($opt, @args) = @_;
	my ($out, $err) = ('', '');
	my $st;
	{
		local *STDOUT;
		local *STDERR;
		open STDOUT, '>', \$out or die;
		open STDERR, '>', \$err or die;
		$st = Net::QMTP::Maildir::run_cli($opt, @args);
	}
	return ($st, $out, $err);
}

sub left { my ($dir) = @_; return sort map { s{^\Q$dir\E/}{}r } glob("$dir/new/* $dir/cur/*") }

sub free_port {
	my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1) or die;
	my $p = $s->sockport;
	close $s;
	return $p;
}

# ---------------------------------------------------------------------
# The big mixed run against mailfront
# ---------------------------------------------------------------------

my $rules_dir = tempdir('rules-XXXXXX', TMPDIR => 1, CLEANUP => 1);
spit("$rules_dir/rules", join "\n", ':recipient',
	'z*:*tempfail*:4.3.0 try again later',
	'd*:*nouser*:5.1.1 no such user here',
	'd*:*refusebounce*:5.7.1 no bounces here', '');
my $mf = Test::Mailfront->start(plugins => [qw(counters mailrules accept)],
	env => { DATABYTES => 200000, MAILRULES => "$rules_dir/rules" });
my %opt = (server => '127.0.0.1', port => $mf->port, timeout => 20, answers => 'auto');

my $dir = maildir();
my (%expect_left, %accepted, %bounce_for);
my $old = time - 15 * $DAY;
for my $i (1 .. 220) {
	my $f = put($dir, sender => "s$i\@example.org", rcpt => "ppp-user$i\@example.net",
		body => body("ok$i"), cur => $i % 4 == 0);
	$accepted{"user$i\@example.net"} = body("ok$i");
}
my $big = body('big', ("x" x 99 . "\n") x 1500 . '');    # 150 KB: spooled (memory_limit below)
put($dir, sender => 'big@example.org', rcpt => 'ppp-big@example.net', body => $big);
$accepted{'big@example.net'} = $big;
for my $i (1 .. 20) {    # permanent rejection, bounced
	put($dir, sender => "b$i\@example.org", rcpt => "ppp-nouser$i\@example.net", body => body("nouser$i"));
	$bounce_for{"b$i\@example.org"} = ["nouser$i\@example.net", body("nouser$i"), '5.1.1 no such user here'];
}
{    # permanent rejection of a spooled message: the bounce is built in tmp/
	my $bb = body('bigbounce', ("z" x 99 . "\n") x 1000 . '');
	put($dir, sender => 'bigb@example.org', rcpt => 'ppp-nouser-big@example.net', body => $bb);
	$bounce_for{'bigb@example.org'} = ['nouser-big@example.net', $bb, '5.1.1 no such user here'];
}
for my $i (1 .. 5) {     # permanent rejection, null senders: removed, no bounce
	put($dir, sender => ($i == 5 ? '#@[]' : ''), rcpt => "ppp-nouser-null$i\@example.net", body => body("null$i"));
}
for my $i (1 .. 5) {     # the bounce itself is refused: kept
	my $f = put($dir, sender => "refusebounce$i\@example.org", rcpt => "ppp-nouser-rb$i\@example.net",
		body => body("rb$i"));
	$expect_left{$f} = 'bounce_failed';
}
for my $i (1 .. 20) {    # temporary rejection, young: kept
	my $f = put($dir, sender => "t$i\@example.org", rcpt => "ppp-tempfail$i\@example.net", body => body("t$i"));
	$expect_left{$f} = 'deferred';
}
for my $i (1 .. 10) {    # temporary rejection, older than two weeks: bounced
	put($dir, sender => "o$i\@example.org", rcpt => "ppp-tempfail-old$i\@example.net", body => body("o$i"),
		time => $old - $i);
	$bounce_for{"o$i\@example.org"} = ["tempfail-old$i\@example.net", body("o$i"), '4.3.0 try again later'];
}
# over DATABYTES: D5.2.3, and the bounce (with its copy) is too big too
my $huge = body('huge', ("y" x 99 . "\n") x 2500 . '');
$expect_left{ put($dir, sender => 'huge@example.org', rcpt => 'ppp-huge@example.net', body => $huge) } = 'bounce_failed';
put($dir, sender => '', rcpt => 'ppp-hugenull@example.net', body => $huge);
for my $i (1 .. 10) {    # other prefix: left alone
	$expect_left{ put($dir, sender => "x$i\@example.org", rcpt => "other-user$i\@example.net", body => body("x$i")) }
		= 'skipped';
}
my @malformed = (
	"Delivered-To: ppp-a\@example.net\nReturn-Path: <s\@example.org>\n\nswapped\n",
	"Subject: no envelope\n\nhi\n",
	'',
	"Return-Path: <s\@example.org>\nSubject: no Delivered-To\n\nhi\n",
	"Return-Path: <s\@example.org>\r\nDelivered-To: ppp-crlf\@example.net\r\n\r\nhi\r\n",
	"Return-Path: <s\@example.org>\nDelivered-To: ppp-\n\nempty recipient\n",
);
$expect_left{ put($dir, raw => $_) } = 'malformed' for @malformed;

# One that changes while being flushed: a child appends whole lines to it
# until told to stop, so every version is a complete message.
my $chg = put($dir, sender => 'chg@example.org', rcpt => 'ppp-changing@example.net', body => body('changing'));
$expect_left{$chg} = 'changed';
my $stopflag = "$rules_dir/stop";
my $writer = fork;
die "fork: $!" unless defined $writer;
if (!$writer) {
	my $k = 0;
	# Kept open: once the file is removed, writes go to the removed inode
	# instead of creating a new file.
	open my $fh, '>>', "$dir/$chg" or POSIX::_exit(1);
	until (-e $stopflag) {
		syswrite $fh, "line " . $k++ . "\n";
		Time::HiRes::sleep(0.0002);
	}
	POSIX::_exit(0);
}
Time::HiRes::sleep(0.1);

my $total = () = left($dir);
cmp_ok($total, '>=', 300, "a maildir of $total messages");

my (@events);
my $flusher = Net::QMTP::Maildir->new(dir => $dir, prefix => 'ppp-', server => '127.0.0.1', port => $mf->port,
	timeout => 20, memory_limit => 65536, chunk_messages => 37, bounce_host => 'flush.example.org',
	on_message => sub { push @events, $_[0] });
my $t0 = Time::HiRes::time();
my $c = $flusher->flush;
my $took = Time::HiRes::time() - $t0;
spit($stopflag, '');
waitpid $writer, 0;
diag(sprintf 'flushed %d messages in %.2f s', $total, $took);
my %ev = map { ($_->{file} => $_) } @events;
# The appender makes the message change between its reading and its
# removal (or during its reading) in all but a freak schedule; should it
# have been read and removed between two appends, it must have been
# delivered as one complete version: checked below.
my $chg_ok = $ev{$chg}{outcome} eq 'changed' ? 1 : 0;
if (!$chg_ok) {
	diag("the changing message was not seen changing: $ev{$chg}{outcome}: $ev{$chg}{text}");
	is($ev{$chg}{outcome}, 'accepted', 'if not seen changing, accepted whole');
	delete $expect_left{$chg};
}

is($c->{status}, 111, 'status 111: some messages are kept for later');
is($c->{error}, undef, 'no run-stopping error');
is($c->{accepted}, 221 + 1 - $chg_ok, '221 accepted');
is($c->{bounced}, 31, '31 bounced (21 rejected, 10 too old)');
is($c->{dropped}, 6, '6 dropped (null senders, one too big)');
is($c->{bounce_failed}, 6, '6 kept because their bounce was refused');
is($c->{deferred}, 20, '20 deferred');
is($c->{skipped}, 10, '10 skipped (prefix)');
is($c->{malformed}, scalar @malformed, 'malformed ones reported');
is($c->{changed}, $chg_ok, 'the changing message is kept');
is($c->{not_sent}, 0, 'none not sent');
is(scalar keys %ev, $total, 'one report per message');
is_deeply([ left($dir) ], [ sort keys %expect_left ], 'exactly the expected files are left');
is_deeply({ map { $_ => $ev{$_}{outcome} } keys %expect_left }, \%expect_left, 'and each for its reason')
	or diag explain [ map { $ev{$_} } keys %expect_left ];
like($ev{$chg}{text}, qr/changed|grew/, 'the changing message says so') if $chg_ok;
is(scalar(grep { m{^tmp/} } map { s{^\Q$dir\E/}{}r } glob("$dir/tmp/*")), 0, 'tmp/ is clean afterwards');

# What mailfront queued.
my @q = $mf->queued;
my (%got, %bounces, @other);
for my $m (@q) {
	if ($m->{sender} eq '') { push @{ $bounces{ $m->{recipients}[0] } }, $m; next }
	push @other, $m unless @{ $m->{recipients} } == 1;
	$got{ $m->{recipients}[0] } = $m;
}
is(scalar(grep { defined $accepted{$_} } keys %got), 221, 'all 221 accepted messages are in the queue');
my @bad = grep { !defined $got{$_} || $got{$_}{message} ne $accepted{$_} } keys %accepted;
is_deeply(\@bad, [], 'byte for byte, envelope lines removed, later Delivered-To kept');
is($got{'user7@example.net'}{sender}, 's7@example.org', 'envelope sender from Return-Path');
for my $r (keys %got) {
	next if $accepted{$r};
	# only the changing message may be there besides: a complete snapshot
	is($r, 'changing@example.net', "nothing else queued ($r)");
	like($got{$r}{message}, qr/\A\Q${\ body('changing')}\E(?:line \d+\n)*\z/, 'a changed message is never sent half-read');
}
is(scalar keys %bounces, 31, '31 bounces queued, from the null sender');
is_deeply([ sort keys %bounces ], [ sort keys %bounce_for ], 'to the envelope senders');
for my $s (sort keys %bounce_for) {
	my ($rcpt, $orig, $why) = @{ $bounce_for{$s} };
	my $b = $bounces{$s}[0]{message};
	my $ok = 1;
	$ok &&= is(scalar @{ $bounces{$s} }, 1, "one bounce to $s");
	$ok &&= like($b, qr/^From: MAILER-DAEMON\@flush\.example\.org\nTo: \Q$s\E\nSubject: failure notice\n\n/m, 'bounce headers');
	$ok &&= like($b, qr/\n\nHi\. This is the qmtp-send program at flush\.example\.org\.\nI'm afraid I wasn't able to deliver your message to the following addresses\.\nThis is a permanent error; I've given up\. Sorry it didn't work out\.\n\n<\Q$rcpt\E>:\n[^\n]*\Q$why\E\n/, 'QSBMF text with the server answer');
	$ok &&= like($b, qr/\n\n--- Below this line is a copy of the message\.\n\nReturn-Path: <\Q$s\E>\n\Q$orig\E\z/, 'and the copy');
	if ($rcpt =~ /old/) {
		$ok &&= like($b, qr/I'm not going to try again; this message has been in the queue too long\./, 'aged-out wording');
	}
	last unless $ok;
}
ok(!(grep { $_ eq 'huge@example.org' || /^refusebounce/ } keys %bounces), 'refused bounces are not queued');

# A second run: only deferrals etc. are tried again; nothing new queued
# except for the still-kept ones.
$mf->clear;
my ($st, $out, $err) = cli({ %opt }, $dir, 'ppp-');
is($st, 111, 'second run via run_cli: 111');
is($out, '', 'nothing on stdout by default');
my @lines = split /\n/, $err;
is(scalar(grep { /\tfailure: / && /got failure/ } @lines), 6, 'refused bounces reported on stderr');
is(scalar(grep { /\tdeferral: 4\.3\.0 try again later; kept$/ } @lines), 20, 'deferrals reported');
is(scalar(grep { /does not start with/ } @lines), 0, 'skipped ones not reported by default');
is(scalar(grep { /left alone$/ } @lines), scalar @malformed, 'malformed ones reported');
ok(!(grep { $_ eq $chg } left($dir)), 'the once-changing message is accepted by the next run');
is(scalar(grep { $_->{recipients}[0] eq 'changing@example.net' } $mf->queued), $chg_ok, 'and queued');
my ($stv, $outv) = cli({ %opt, verbose => 1 }, $dir, 'ppp-');
like($outv, qr/^\Q$dir\E: .*20 deferred.*10 skipped/m, 'verbose: summary line');
like($outv, qr/\tother-user1\@example\.net\trecipient does not start with 'ppp-'; left alone$/m, 'verbose: skipped listed');
my ($stq, $outq, $errq) = cli({ %opt, quiet => 1 }, $dir, 'ppp-');
is("$stq|$outq|$errq", '111||', 'quiet: nothing printed, status 111');

# Accepted everything: silent, 0.  Nothing to do: 0, no connection.
{
	my $d = maildir();
	put($d, sender => "a$_\@example.org", rcpt => "ppp-fine$_\@example.net", body => body("f$_")) for 1 .. 3;
	put($d, sender => 'a@example.org', rcpt => 'zzz-other@example.net', body => body('o'));
	my @r = cli({ %opt }, $d, 'ppp-');
	is_deeply(\@r, [0, '', ''], 'all accepted: status 0, silent');
	@r = cli({ %opt, port => free_port() }, $d, 'ppp-');
	is_deeply(\@r, [0, '', ''], 'nothing to send: 0 and no connection attempt (server down)');
}

# ---------------------------------------------------------------------
# The lock
# ---------------------------------------------------------------------
{
	my $d = maildir();
	my $f = put($d, sender => 'a@example.org', rcpt => 'ppp-locked@example.net', body => body('l'));
	open my $lk, '>>', "$d/.qmtp-send.lock" or die;
	flock $lk, LOCK_EX | LOCK_NB or die "flock: $!";
	$mf->clear;
	my ($s, $o, $e) = cli({ %opt }, $d, 'ppp-');
	is($s, 111, 'lock held by another run: 111');
	like($e, qr/being flushed by another process/, 'and says so');
	is_deeply([ left($d) ], [$f], 'message untouched');
	is(scalar($mf->queued), 0, 'nothing sent');
	close $lk;
	($s, $o, $e) = cli({ %opt }, $d, 'ppp-');
	is($s, 0, 'lock released: flushed');
	is_deeply([ left($d) ], [], 'and removed');
}

# ---------------------------------------------------------------------
# Connection refused: everything kept, even the old ones
# ---------------------------------------------------------------------
{
	my $d = maildir();
	my @f = map { put($d, sender => 'a@example.org', rcpt => "ppp-tempfail$_\@example.net",
		body => body("r$_"), time => $old) } 1 .. 5;
	my ($s, $o, $e) = cli({ %opt, port => free_port(), 'connect-timeout' => 5 }, $d, 'ppp-');
	is($s, 111, 'connection refused: 111');
	like($e, qr/cannot connect.*kept for the next run/s, 'says why, and that everything is kept');
	is_deeply([ left($d) ], [ sort @f ], 'every message kept, none bounced');
}

# ---------------------------------------------------------------------
# Configuration errors: 100
# ---------------------------------------------------------------------
{
	my $nd = tempdir('notmd-XXXXXX', TMPDIR => 1, CLEANUP => 1);
	my ($s, $o, $e) = cli({ %opt }, $nd, 'ppp-');
	is($s, 100, 'not a maildir: 100');
	like($e, qr/is not a maildir/, 'says so');
	($s, $o, $e) = cli({ %opt }, $nd);
	is($s, 100, 'missing PREFIX: 100');
	($s, $o, $e) = cli({ %opt, 'max-age' => 'soon' }, maildir(), '');
	is($s, 100, 'bad --max-age: 100');
	($s, $o, $e) = cli({ %opt, server => undef }, maildir(), '');
	is($s, 100, 'no server: 100');
}

# max-age configurable: 0 bounces every temporary rejection at once;
# empty prefix takes every recipient as is.
{
	my $d = maildir();
	put($d, sender => 'm@example.org', rcpt => 'tempfail-now@example.net', body => body('m'));
	$mf->clear;
	my ($s, $o, $e) = cli({ %opt, 'max-age' => 0 }, $d, '');
	is($s, 100, 'max-age 0: bounced at once, status 100');
	like($e, qr/deferral: 4\.3\.0 try again later; older than the limit; bounced to m\@example\.org; removed/,
		'reported as bounced');
	my @b = $mf->queued;
	is(scalar(@b), 1, 'one bounce queued');
	is($b[0]{recipients}[0], 'm@example.org', 'to the sender');
}

# Odd files among the messages: a symlink (read through, it never matched
# at removal and went out again on every run), a FIFO (waited on for ever,
# with the lock held), and a young file named "5.eml" (taken for a message
# delivered in 1970, and bounced on its first temporary refusal).
{
	require POSIX;
	my $d = maildir();
	put($d, sender => 's@example.org', rcpt => 'ppp-real@example.net', body => body('real one'));
	spit("$d/tmp/target", "Return-Path: <s\@example.org>\nDelivered-To: ppp-link\@example.net\n" . body('via link'));
	symlink("$d/tmp/target", "$d/new/1700000000.M1P1.link") or die "symlink: $!";
	POSIX::mkfifo("$d/new/1700000001.M2P1.fifo", 0600) or die "mkfifo: $!";
	$mf->clear;
	local $SIG{ALRM} = sub { die "hung\n" };
	alarm 20;
	my ($s, $o, $e) = eval { cli({ %opt }, $d, 'ppp-') };
	alarm 0;
	is($@, '', 'the flush does not hang');
	like($e // '', qr/1700000000\.M1P1\.link\t.*not a regular file/, 'a symlink is left alone, saying why');
	like($e // '', qr/1700000001\.M2P1\.fifo\t.*not a regular file/, 'so is a FIFO');
	my @q = $mf->queued;
	is(scalar(grep { $_->{message} =~ /via link/ } @q), 0, 'nothing went out through the symlink');
	is(scalar(grep { $_->{message} =~ /real one/ } @q), 1, 'the real message went out');

	my $d5 = maildir();
	spit("$d5/new/5.eml", "Return-Path: <s\@example.org>\nDelivered-To: ppp-tempfail-five\@example.net\n" . body('five'));
	($s, $o, $e) = cli({ %opt }, $d5, 'ppp-');
	is($s, 111, 'a young message named 5.eml, refused for now: 111');
	ok(-e "$d5/new/5.eml", '... kept');
	unlike($e, qr/bounced/, '... not bounced as if it came from 1970');
}

# Through the command, when it has --maildir.
SKIP: {
	my $script = -f 'blib/script/qmtp-send' ? 'blib/script/qmtp-send' : 'bin/qmtp-send';
	my $usage = `$^X -Mblib $script --help 2>&1`;
	skip 'qmtp-send has no --maildir yet', 6 unless $usage =~ /--maildir/;
	my $d = maildir();
	put($d, sender => 'c@example.org', rcpt => "ppp-cli$_\@example.net", body => body("c$_")) for 1 .. 3;
	my $kept = put($d, sender => 'c@example.org', rcpt => 'ppp-tempfail-cli@example.net', body => body('ct'));
	put($d, sender => 'c@example.org', rcpt => 'ppp-nouser-cli@example.net', body => body('cn'));
	$mf->clear;
	my $err = "$rules_dir/cli.err";
	my $cmd = join ' ', map { quotemeta } $^X, '-Mblib', $script, '--maildir', '--server', '127.0.0.1',
		'--port', $mf->port, $d, 'ppp-';
	my $out = `$cmd 2>$err`;
	my $st = $? >> 8;
	is($st, 111, 'qmtp-send --maildir: 111 (a deferral is kept)');
	is($out, '', 'nothing on stdout');
	my $e = slurp($err);
	like($e, qr/tempfail-cli.*deferral: 4\.3\.0.*kept/, 'deferral on stderr');
	like($e, qr/nouser-cli.*failure: 5\.1\.1.*bounced to c\@example\.org; removed/, 'bounce on stderr');
	is_deeply([ left($d) ], [$kept], 'only the deferred message is left');
	is(scalar(my @q = $mf->queued), 4, 'three messages and a bounce queued');
}

# Stale copies in tmp/ from a killed run are cleaned after 36 hours.
{
	my $d = maildir();
	spit("$d/tmp/$_", 'x') for '100.P1Q1.qmtp-send', '100.P1Q2.qmtp-send.bounce', '100.P1Q3.qmtp-send', 'other';
	utime time - 37 * 3600, time - 37 * 3600, "$d/tmp/100.P1Q1.qmtp-send", "$d/tmp/100.P1Q2.qmtp-send.bounce",
		"$d/tmp/other";
	my @r = cli({ %opt }, $d, 'ppp-');
	is($r[0], 0, 'empty maildir: 0');
	is_deeply([ sort map { s{.*/}{}r } glob("$d/tmp/*") ], ['100.P1Q3.qmtp-send', 'other'],
		'old copies of ours removed; recent ones and others\' files kept');
}

$mf->stop;

# ---------------------------------------------------------------------
# A fake server for what mailfront will not do
# ---------------------------------------------------------------------

# Changed after it was sent and accepted: kept (duplicate, never a loss).
{
	my $d = maildir();
	my $f = put($d, sender => 'a@example.org', rcpt => 'ppp-late@example.net', body => body('late'));
	my $g = put($d, sender => 'a@example.org', rcpt => 'ppp-fine@example.net', body => body('fine'));
	my $srv = Test::QMTPServer->new(sub {
		my ($conn) = @_;
		while (my $p = $conn->read_package) {
			if ($p->{recipients}[0] eq 'late@example.net') {
				open my $fh, '>>', "$d/$f" or die;
				print $fh "appended after the read\n";
				close $fh;
			}
			$conn->answer_all('K', 'ok');
		}
	});
	my ($s, $o, $e) = cli({ %opt, port => $srv->port, answers => 'recipient' }, $d, 'ppp-');
	is($s, 111, 'changed after sending: 111');
	like($e, qr/success: ok; but the file changed after it was read, so it is kept/, 'reported');
	unlike($e, qr/removed/, 'not said to be removed');
	is_deeply([ left($d) ], [$f], 'the changed one kept, the other removed');
	my @p = $srv->packages(0);
	is(scalar @p, 2, 'two packages on one connection');
	is($p[0]{enc}, "\n", 'unix encoding');
}

# No answer (connection dropped after the message): kept even when old.
{
	my $d = maildir();
	my $f = put($d, sender => 'a@example.org', rcpt => 'ppp-x@example.net', body => body('x'), time => $old);
	my $srv = Test::QMTPServer->new(sub { my ($conn) = @_; $conn->read_package; });
	my ($s, $o, $e) = cli({ %opt, port => $srv->port }, $d, 'ppp-');
	is($s, 111, 'no answer: 111');
	is_deeply([ left($d) ], [$f], 'old message without an answer is kept, not bounced');
}

# A server Z for an old message with a null sender: dropped without bounce.
{
	my $d = maildir();
	put($d, sender => '', rcpt => 'ppp-y@example.net', body => body('y'), time => $old);
	my $srv = Test::QMTPServer->new(sub {
		my ($conn) = @_;
		while (my $p = $conn->read_package) { $conn->answer_all('Z', 'later') }
	});
	my ($s, $o, $e) = cli({ %opt, port => $srv->port }, $d, 'ppp-');
	is($s, 100, 'aged null-sender message: 100');
	is_deeply([ left($d) ], [], 'removed');
	is(scalar(my @p = $srv->packages(0)), 1, 'no bounce sent');
}

done_testing;

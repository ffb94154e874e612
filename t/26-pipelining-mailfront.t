#!perl
# send_many() against the real QMTP server mailfront (under tcpserver on
# 127.0.0.1, t/lib/Test/Mailfront.pm): every job lands in mailfront's queue
# byte for byte and in order, every recipient gets mailfront's answer, and
# once the client has learnt that mailfront answers once per package, a
# batch is pipelined over one connection.

use strict;
use warnings;

# A hang must fail the test, not block the suite (default action of
# SIGALRM: a Perl handler would not run while the C core waits in poll()).
alarm 240;

use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes ();

use lib 't/lib';
use Test::Mailfront;

Test::Mailfront->require_or_skip;

use Net::QMTP;

$SIG{PIPE} = 'DEFAULT';    # a SIGPIPE would kill the test: it must never come

my $ACCEPTED = 'success: 2.6.0 Message accepted.';
my $DIR = tempdir(CLEANUP => 1);

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

sub is_bytes {
	my ($got, $want, $name) = @_;
	return pass($name) if defined $got && $got eq $want;
	fail($name);
	return diag('got undef') unless defined $got;
	my $i = 0;
	$i++ while $i < length($got) && $i < length($want) && substr($got, $i, 1) eq substr($want, $i, 1);
	my $from = $i > 20 ? $i - 20 : 0;
	diag(sprintf "lengths: got %d, expected %d; first difference at byte %d\n"
			. "  got:      ...%s\n  expected: ...%s",
		length $got, length $want, $i,
		printable(substr($got, $from, 60)), printable(substr($want, $from, 60)));
	return 0;
}

sub spit {
	my ($path, $bytes) = @_;
	open my $fh, '>', $path or die "$path: $!";
	binmode $fh;
	print {$fh} $bytes or die "$path: $!";
	close $fh or die "$path: $!";
}

# The message bytes of a job.
sub body_of {
	my ($job) = @_;
	return $job->{message} if defined $job->{message};
	open my $fh, '<', $job->{file} or die "$job->{file}: $!";
	binmode $fh;
	local $/;
	my $data = <$fh>;
	return defined $data ? $data : '';
}

# mailfront pids that received a sender (one line per package) in the log
# after byte offset $from.
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

# Checks a batch's results (all accepted) and that it landed in order, byte
# for byte. Returns nothing useful.
sub batch_ok {
	my ($mf, $jobs, $res, $name) = @_;
	is(ref $res, 'ARRAY', "$name: send_many returns an array reference") or return;
	is(scalar @$res, scalar @$jobs, "$name: one entry per job");
	for my $j (0 .. $#$jobs) {
		my $e = $res->[$j] || {};
		my $tag = "$name: job " . ($j + 1);
		my @rcpts = @{ $jobs->[$j]{recipients} };
		is($e->{error}, undef, "$tag: error undef");
		is_deeply($e->{result}, { map { $_ => $ACCEPTED } @rcpts }, "$tag: every recipient accepted");
		my @r = @{ ref $e->{responses} eq 'ARRAY' ? $e->{responses} : [] };
		is_deeply([ map { [ $_->{recipient}, $_->{code}, $_->{response}, $_->{received} ] } @r ],
			[ map { [ $_, 'K', $ACCEPTED, 1 ] } @rcpts ], "$tag: responses per recipient, in order");
		# mailfront answers once per package: with several recipients the
		# one answer must be marked as standing for all of them.
		is_deeply([ map { $_->{per_package} } @r ], [ (1) x @r ], "$tag: per_package 1")
			if @rcpts > 1;
	}

	ok($mf->wait_queued(scalar @$jobs, 10), "$name: all queued");
	my @queued = $mf->queued;
	is(scalar @queued, scalar @$jobs, "$name: exactly one queue file per job");
	my $bad_raw = 0;
	for my $j (0 .. $#$jobs) {
		my $want = raw_of($jobs->[$j]{sender}, $jobs->[$j]{recipients}, body_of($jobs->[$j]));
		next if $queued[$j] && $queued[$j]{raw} eq $want;
		$bad_raw++;
		is_bytes($queued[$j] && $queued[$j]{raw}, $want, "$name: job " . ($j + 1) . ' queued byte for byte');
	}
	is($bad_raw, 0, "$name: every job landed byte for byte, in job order");
}

my $mf = Test::Mailfront->start(plugins => ['accept']);
my $q = Net::QMTP->new('127.0.0.1', Port => $mf->port, Timeout => 30)
	or BAIL_OUT('cannot connect to mailfront on port ' . $mf->port . ": $@");
$q->encoding('unix');    # mailfront refuses the dos encoding

# 30 jobs, 1 to 3 recipients (duplicates too), varied bodies: empty, with
# NUL and 8-bit bytes, long, from files (small, and large enough for
# sendfile), an empty sender. Job 1 has one recipient and job 2 three, so
# the client first writes both, then learns the server's way of answering.
my $big = join '', map { chr(($_ * 13) % 256) } 1 .. 200_000;
spit("$DIR/small", "Subject: small file\n\nfrom a file\n");
spit("$DIR/large", "Subject: large file\n\n$big\n");
spit("$DIR/empty", '');
my @jobs;
for my $j (1 .. 30) {
	my $nr = $j == 1 ? 1 : $j == 2 ? 3 : 1 + ($j * 5) % 3;
	my @rcpts = map { "r$j.$_\@example.org" } 1 .. $nr;
	$rcpts[-1] = $rcpts[0] if $j % 7 == 0 && $nr > 1;
	my %job = (sender => $j == 4 ? '' : "s$j\@example.org", recipients => \@rcpts);
	if ($j == 5)     { $job{file} = "$DIR/small" }
	elsif ($j == 11) { $job{file} = "$DIR/large" }
	elsif ($j == 17) { $job{file} = "$DIR/empty" }
	elsif ($j == 8)  { $job{message} = '' }
	elsif ($j == 13) { $job{message} = "Subject: big\n\n$big\n" }
	else {
		$job{message} = "Subject: job $j\nX-Bin: \x80\xff\n\n" . ("line $j\0\n" x $j);
	}
	$job{encoding} = 'unix' if $j % 3 == 0;
	push @jobs, \%job;
}

my $log_from = length $mf->log;
$mf->clear;
my $t0 = Time::HiRes::time();
my $res = eval { $q->send_many(@jobs) };
my $took = Time::HiRes::time() - $t0;
is($@, '', 'send_many of 30 jobs does not die');
is($q->error, undef, 'error() undef');
cmp_ok($took, '<', 3, '30 jobs within 3 s (learning the server included)');
note(sprintf '30 jobs took %.3f s', $took);
batch_ok($mf, \@jobs, $res, '30 jobs');
my @pids = distinct(packages_in_log($mf, $log_from));
# 'auto': only a hang-up after the half-close shows that mailfront answers
# once per package, so a job of several recipients ends its connection.
my $multi = grep { @{ $_->{recipients} } > 1 } @jobs;
cmp_ok(scalar @pids, '<=', $multi + 1, 'auto: at most a connection per job of several recipients, plus one')
	or diag("mailfront pids: @pids");

# Declared once per package, as mailfront answers: the batch is pipelined
# over one connection from the start, with no waiting.
my @more;
for my $j (1 .. 100) {
	my $nr = 1 + ($j * 7) % 3;
	push @more, {
		sender     => "again$j\@example.org",
		recipients => [ map { "a$j.$_\@example.org" } 1 .. $nr ],
		message    => "Subject: again $j\n\n" . ("$j " x ($j * 3)) . "\n",
	};
}
$log_from = length $mf->log;
$mf->clear;
$t0 = Time::HiRes::time();
$q = Net::QMTP->new('127.0.0.1', Port => $mf->port, Timeout => 30, Answers => 'package')
	or die "cannot connect to mailfront: $@";
$res = eval { $q->send_many(\@more) };
$took = Time::HiRes::time() - $t0;
is($@, '', 'send_many of 100 jobs does not die');
is($q->error, undef, 'error() undef');
cmp_ok($took, '<', 2, '100 jobs within 2 s');
note(sprintf '100 jobs took %.3f s', $took);
batch_ok($mf, \@more, $res, '100 jobs');
@pids = distinct(packages_in_log($mf, $log_from));
is(scalar @pids, 1, 'the 100 jobs went over one connection') or diag("mailfront pids: @pids");
is(scalar(my @s = packages_in_log($mf, $log_from)), 100, 'mailfront saw 100 packages');

alarm 0;
done_testing();

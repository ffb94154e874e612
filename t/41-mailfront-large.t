#!perl
# A 50 MiB message_from_file() to the real mailfront: it must land byte for
# byte, and be streamed -- the process's peak memory must not grow by
# anything near the size of the file.  Kept apart from t/40 so that the
# peak (VmHWM) is not already raised by other tests.

use strict;
use warnings;

# Default SIGALRM action on purpose (see t/40-mailfront.t).
alarm 240;

use Test::More;
use File::Temp qw(tempdir);
use Digest::MD5;
use Time::HiRes ();

use lib 't/lib';
use Test::Mailfront;

Test::Mailfront->require_or_skip;

use Net::QMTP;

plan skip_all => 'needs /proc/self/status (Linux) to measure memory'
	unless -r '/proc/self/status';

my $ACCEPTED = 'success: 2.6.0 Message accepted.';
my $BLOCK    = 64 * 1024;
my $BLOCKS   = 800;                         # 800 x 64 KiB = 50 MiB
my $TAIL     = "\0tail\r\nno final newline \xff";

sub vm_hwm_kib {
	open my $fh, '<', '/proc/self/status' or return undef;
	while (<$fh>) {
		return $1 if /^VmHWM:\s*(\d+)\s*kB/;
	}
	return undef;
}

my $tmp = tempdir('net-qmtp-41-XXXXXX', TMPDIR => 1, CLEANUP => 1);

# Write the file a block at a time (never the whole of it in memory):
# pseudo-random bytes, NULs included, each block made different from the
# others by its number, so a reordered or repeated block changes the digest.
my $file = "$tmp/large.eml";
my ($size, $file_md5);
{
	srand(20240401);
	my $base = pack('C*', map { int rand 256 } 1 .. $BLOCK);
	substr($base, 100, 16) = "\0" x 16;    # a run of NULs for sure
	my $ctx = Digest::MD5->new;
	open my $fh, '>', $file or die "$file: $!";
	binmode $fh;
	my $head = "Subject: large\n\n";
	print {$fh} $head or die "$file: $!";
	$ctx->add($head);
	$size = length $head;
	for my $i (0 .. $BLOCKS - 1) {
		my $block = $base;
		substr($block, ($i * 131) % ($BLOCK - 8), 8) = pack('NN', $i, $i ^ 0xA5A5A5A5);
		print {$fh} $block or die "$file: $!";
		$ctx->add($block);
		$size += length $block;
	}
	print {$fh} $TAIL or die "$file: $!";
	$ctx->add($TAIL);
	$size += length $TAIL;
	close $fh or die "$file: $!";
	$file_md5 = $ctx->hexdigest;
}
is(-s $file, $size, 'the test file has the expected size');
cmp_ok($size, '>=', 50 * 1024 * 1024, 'the test file is at least 50 MiB');

my $mf = Test::Mailfront->start(plugins => ['accept']);
my $q = Net::QMTP->new('127.0.0.1', Port => $mf->port, Timeout => 60)
	or BAIL_OUT("cannot connect to mailfront: $@");
$q->sender('big@example.org');
$q->recipient('r@example.org');
is($q->message_from_file($file), $file, 'message_from_file() takes the file');

my $hwm_before = vm_hwm_kib();
ok(defined $hwm_before, "VmHWM before send: $hwm_before kB");
my $t0 = Time::HiRes::time();
my $r = $q->send;
my $took = Time::HiRes::time() - $t0;
my $hwm_after = vm_hwm_kib();
note(sprintf 'send() of %d bytes took %.2f s', $size, $took);

is(ref $r, 'HASH', 'send() returns a hash reference')
	or diag('error(): ' . (defined $q->error ? $q->error : 'undef'));
is($r && $r->{'r@example.org'}, $ACCEPTED, 'the 50 MiB message is accepted');
my $resp = $q->responses;
is(scalar @$resp, 1, 'one response');
is($resp->[0]{code}, 'K', 'code K');
my $growth = $hwm_after - $hwm_before;
cmp_ok($growth, '<', 20 * 1024, 'peak memory grows by less than 20 MiB during send() (the file is streamed)')
	or diag("VmHWM before $hwm_before kB, after $hwm_after kB");
note("VmHWM grew by $growth kB during send()");
$q->disconnect;

# Compare the stored message (after "sender\0rcpt\0") with the file,
# without reading either into memory whole (and without queued(), which
# would slurp the file).
ok($mf->wait_queued(1, 30), 'the message is queued');
my @files = glob($mf->queue_dir . '/new/*');
is(scalar @files, 1, 'exactly one queue file');
SKIP: {
	skip 'no queue file', 3 unless @files == 1;
	my $prefix = "big\@example.org\0r\@example.org\0";
	open my $fh, '<', $files[0] or die "$files[0]: $!";
	binmode $fh;
	read($fh, my $got_prefix, length $prefix);
	is($got_prefix, $prefix, 'the queue file starts with the envelope');
	is(-s $files[0], length($prefix) + $size, 'the stored message has the size of the file');
	my $got_md5 = Digest::MD5->new->addfile($fh)->hexdigest;
	is($got_md5, $file_md5, 'the stored message is the file, byte for byte (MD5)');
	close $fh;
}

$mf->stop;
done_testing;

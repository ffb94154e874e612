# qmtp-send --answers against real mailfront, which answers once per
# message. Declared 'package', a one-shot send to two recipients takes no
# waiting: its one answer stands for both at once. Without the declaration
# ('auto'), the client has to wait HalfCloseAfter before it may take that
# one answer for both.
#
# Rather than time the send against a small figure, qmtp-send runs with
# HalfCloseAfter raised (through a wrapper that adds the option to every
# Net::QMTP->new and times send_stream): with 'package' the send ends far
# below it, so no half-close wait happened; and with 'auto' and a short
# HalfCloseAfter, the wait is there (a lower bound: it cannot come sooner).
use strict;
use warnings;
use Test::More;
use File::Spec;
use File::Temp qw(tempdir);

use lib 't/lib';
use Test::Mailfront;

Test::Mailfront->require_or_skip;
alarm 120;

my $dir = tempdir(CLEANUP => 1);
my $script = File::Spec->rel2abs(-f 'blib/script/qmtp-send' ? 'blib/script/qmtp-send' : 'bin/qmtp-send');

# Runs $script with every Net::QMTP->new given HalfCloseAfter =>
# $ENV{T81_HALFCLOSE}, and reports on standard error how long each
# send_stream took.
my $wrapper = <<'EOS';
use strict;
use warnings;
use Time::HiRes ();
use Net::QMTP;
my $script = shift @ARGV;
{
    no warnings 'redefine';
    my $new = \&Net::QMTP::new;
    *Net::QMTP::new = sub { $new->(@_, HalfCloseAfter => $ENV{T81_HALFCLOSE}) };
    my $stream = \&Net::QMTP::send_stream;
    *Net::QMTP::send_stream = sub {
        my $t0 = Time::HiRes::time();
        my $r = $stream->(@_);
        printf STDERR "t81: send_stream took %.3f s\n", Time::HiRes::time() - $t0;
        return $r;
    };
}
$0 = $script;
my $ok = do $script;    # qmtp-send exits from inside
die $@ if $@;
die "$script: $!" unless defined $ok;
EOS

sub write_file {
    my ($name, $bytes) = @_;
    open my $fh, '>:raw', "$dir/$name" or die $!;
    print $fh $bytes;
    close $fh;
    return "$dir/$name";
}

my $wrapper_file = write_file('wrapper.pl', $wrapper);

# Runs qmtp-send under the wrapper; returns (exit code, stdout, stderr,
# seconds send_stream took or undef).
sub run {
    my ($env, $stdin, @args) = @_;
    local @ENV{ keys %$env } = values %$env;
    local $ENV{T81_HALFCLOSE} = $ENV{T81_HALFCLOSE} || 30;
    my $in = write_file('stdin', $stdin);
    my $cmd = join ' ', map { quotemeta } $^X, '-Mblib', $wrapper_file, $script, @args;
    my $out = `$cmd <$in 2>$dir/stderr`;
    my $code = $? >> 8;
    open my $fh, '<', "$dir/stderr" or die $!;
    my $err = do { local $/; <$fh> };
    my ($took) = $err =~ /^t81: send_stream took ([0-9.]+) s$/m;
    return ($code, $out, $err, $took);
}

my $mf = Test::Mailfront->start;
my @server = ('-v', '--server', '127.0.0.1', '--port', $mf->port, '--sender', 'me@example.org');
my @two = ('a@example.org', 'b@example.org');
my $accepted = "-\ta\@example.org\tsuccess: 2.6.0 Message accepted.\n-\tb\@example.org\tsuccess: 2.6.0 Message accepted.\n";

sub stored_once {
    my ($subject, $name) = @_;
    ok($mf->wait_queued(1, 5), "$name: the message is stored");
    my @q = $mf->queued;
    is(scalar @q, 1, "$name: once");
    is($q[0]{raw}, "me\@example.org\0a\@example.org\0b\@example.org\0Subject: $subject\n\nhello\n",
        "$name: for both recipients, byte for byte");
    $mf->clear;
}

# --answers package: no half-close wait.
{
    local $ENV{QMTP_ANSWERS};
    delete $ENV{QMTP_ANSWERS};
    my ($code, $out, $err, $took) = run({ T81_HALFCLOSE => 30 }, "Subject: declared\n\nhello\n",
        @server, '--answers', 'package', @two);
    is($code, 0, '--answers package: exit 0') or diag $err;
    is($out, $accepted, '... both recipients accepted');
    ok(defined $took, '... the wrapper timed the send') or diag $err;
    cmp_ok($took // 99, '<', 15, "... far below HalfCloseAfter (30 s): no half-close wait (took ${\($took // '?')} s)");
    stored_once('declared', '--answers package');
}

# QMTP_ANSWERS=package from the environment does the same.
{
    my ($code, $out, $err, $took) = run({ T81_HALFCLOSE => 30, QMTP_ANSWERS => 'package' },
        "Subject: from env\n\nhello\n", @server, @two);
    is($code, 0, 'QMTP_ANSWERS=package: exit 0') or diag $err;
    is($out, $accepted, '... both recipients accepted');
    cmp_ok($took // 99, '<', 15, "... no half-close wait (took ${\($took // '?')} s)");
    stored_once('from env', 'QMTP_ANSWERS=package');
}

# The option wins over the environment.
{
    my ($code, $out, $err, $took) = run({ T81_HALFCLOSE => 30, QMTP_ANSWERS => 'nonsense' },
        "Subject: option wins\n\nhello\n", @server, '--answers', 'package', @two);
    is($code, 0, '--answers package beats QMTP_ANSWERS=nonsense') or diag $err;
    is($out, $accepted, '... both recipients accepted');
    cmp_ok($took // 99, '<', 15, '... no half-close wait');
    stored_once('option wins', 'the option');
}

# The control: 'auto' has to wait HalfCloseAfter before it may take the
# one answer for both recipients, so the wrapper does measure the wait.
{
    local $ENV{QMTP_ANSWERS};
    delete $ENV{QMTP_ANSWERS};
    my ($code, $out, $err, $took) = run({ T81_HALFCLOSE => 1 }, "Subject: auto\n\nhello\n",
        @server, '--answers', 'auto', @two);
    is($code, 0, '--answers auto: exit 0') or diag $err;
    is($out, $accepted, '... both recipients accepted');
    cmp_ok($took // 0, '>=', 0.9, "... after waiting HalfCloseAfter (1 s; took ${\($took // '?')} s)");
    stored_once('auto', '--answers auto');
}

# Wrong values are usage errors, naming the value.
{
    my ($code, $out, $err) = run({}, "x\n", @server, '--answers', 'sometimes', 'g@x');
    is($code, 100, '--answers sometimes: exit 100');
    like($err, qr/^qmtp-send: --answers \(or QMTP_ANSWERS\) must be auto, recipient or package, not 'sometimes'/m,
        '... saying what is wrong');
    like($err, qr/--answers auto\|recipient\|package/, '... with the usage');
    ($code, $out, $err) = run({ QMTP_ANSWERS => 'per-message' }, "x\n", @server, 'g@x');
    is($code, 100, 'QMTP_ANSWERS=per-message: exit 100');
    like($err, qr/not 'per-message'/, '... naming the value');
    is(scalar $mf->queued, 0, 'nothing was sent');
}

# The manual says what to give for mailfront.
{
    my $cmd = join ' ', map { quotemeta } $^X, '-Mblib', $script, '--help';
    my $help = `$cmd 2>/dev/null`;
    like($help, qr/--answers/, '--help documents --answers');
    like($help, qr/QMTP_ANSWERS/, '... and QMTP_ANSWERS');
    like($help, qr/mailfront users/i, '... with the advice for mailfront users');
}

done_testing;

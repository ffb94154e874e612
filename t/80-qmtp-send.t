# qmtp-send end to end against real mailfront: standard input and files,
# the result lines, the progress bar and the exit codes qmail uses.
use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);

use lib 't/lib';
use Test::Mailfront;

Test::Mailfront->require_or_skip;
alarm 120;

my $dir = tempdir(CLEANUP => 1);
my $script = -f 'blib/script/qmtp-send' ? 'blib/script/qmtp-send' : 'bin/qmtp-send';

sub write_file {
    my ($name, $bytes) = @_;
    open my $fh, '>:raw', "$dir/$name" or die $!;
    print $fh $bytes;
    close $fh;
    return "$dir/$name";
}

# Runs qmtp-send; returns (exit code, stdout, stderr).
sub run {
    my ($stdin, @args) = @_;
    my $in = defined $stdin ? write_file('stdin', $stdin) : '/dev/null';
    my $cmd = join ' ', map { quotemeta } $^X, '-Mblib', $script, @args;
    my $out = `$cmd <$in 2>$dir/stderr`;
    my $code = $? >> 8;
    open my $fh, '<', "$dir/stderr" or die $!;
    my $err = do { local $/; <$fh> };
    return ($code, $out, $err);
}

my $mf = Test::Mailfront->start;
my @server = ('--server', '127.0.0.1', '--port', $mf->port, '--sender', 'me@example.org');

# A message on standard input (a pipe), two recipients.
{
    my $cmd = join ' ', map { quotemeta } $^X, '-Mblib', $script, @server, 'a@example.org', 'b@example.org';
    my $out = `printf 'Subject: piped\\n\\nhello\\n' | $cmd`;
    is($? >> 8, 0, 'stdin from a pipe: exit 0');
    is($out, "-\ta\@example.org\tsuccess: 2.6.0 Message accepted.\n-\tb\@example.org\tsuccess: 2.6.0 Message accepted.\n",
        'one line per recipient: message, recipient, result');
    ok($mf->wait_queued(1, 5), 'the message is stored');
    is(($mf->queued)[0]{raw}, "me\@example.org\0a\@example.org\0b\@example.org\0Subject: piped\n\nhello\n",
        '... byte for byte');
    $mf->clear;
}

# Standard input redirected from a file (streamed), environment defaults.
{
    local $ENV{QMTPHOST} = '127.0.0.1';
    local $ENV{QMTPPORT} = $mf->port;
    local $ENV{QMTPSENDER} = '';
    my ($code, $out) = run("Subject: redirected\n\nbody\0with NUL\n", 'c@example.org');
    is($code, 0, 'stdin redirected from a file, server and sender from the environment: exit 0');
    like($out, qr/^-\tc\@example\.org\tsuccess: /, '... and a success line');
    ok($mf->wait_queued(1, 5), 'stored');
    is(($mf->queued)[0]{raw}, "\0c\@example.org\0Subject: redirected\n\nbody\0with NUL\n",
        '... with the null sender from QMTPSENDER, byte for byte');
    $mf->clear;
}

# Several files, pipelined on one connection, with a progress bar.
{
    my @files = map { write_file("m$_", "Subject: file $_\n\n" . ("line $_\n" x $_)) } 1 .. 3;
    my ($code, $out, $err) = run(undef, @server, (map { ('--file', $_) } @files), '--progress', 'x@example.org');
    is($code, 0, 'three files: exit 0');
    is($out, join('', map { "$_\tx\@example.org\tsuccess: 2.6.0 Message accepted.\n" } @files),
        'a line per message and recipient, in order');
    like($err, qr{\[#+\] 3/3 messages}, 'the progress bar reaches 3/3');
    ok($mf->wait_queued(3, 5), 'all three stored');
    is_deeply([ map { $_->{message} } $mf->queued ],
        [ map { "Subject: file $_\n\n" . ("line $_\n" x $_) } 1 .. 3 ], '... in order, byte for byte');
    $mf->clear;
    ($code, $out, $err) = run(undef, @server, (map { ('--file', $_) } @files), 'x@example.org');
    unlike($err, qr/messages/, 'no progress bar when standard error is not a terminal');
    $mf->clear;
}

# Exit codes: deferral 111, permanent failure 100, unreachable 111, usage 100.
{
    my ($code, $out) = run("x\n", @server, '--dos', 'd@example.org');
    is($code, 111, 'a deferral (mailfront refuses CR LF): exit 111');
    like($out, qr/\tdeferral: Cannot handle non-LF line terminator$/m, '... with the server\'s text');

    my $limited = Test::Mailfront->start(plugins => ['counters', 'accept'], env => { DATABYTES => 10 });
    ($code, $out) = run("Subject: too long for the limit\n", '--server', '127.0.0.1', '--port', $limited->port,
        '--sender', 's@x', 'e@example.org');
    is($code, 100, 'a permanent failure: exit 100');
    like($out, qr/\tfailure: 5\.2\.3 /, '... with the server\'s text');
    $limited->stop;

    my $gone = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0) or die $!;
    my $dead = $gone->sockport;
    close $gone;
    my $err;
    ($code, $out, $err) = run("x\n", '--server', "127.0.0.1:$dead", 'f@example.org');
    is($code, 111, 'server unreachable: exit 111');
    like($err, qr/^qmtp-send: cannot connect to 127\.0\.0\.1.*refused/mi, '... saying why');

    ($code, $out, $err) = run("x\n", @server);
    is($code, 100, 'no recipient: exit 100');
    like($err, qr/^qmtp-send: no recipient given/m, '... saying what is wrong');
    ($code, $out, $err) = run("x\n", @server, '--frobnicate', 'g@x');
    is($code, 100, 'an unknown option: exit 100');
    like($err, qr/Unknown option: frobnicate/, '... naming it');
    ($code, $out, $err) = run("x\n", @server, '--file', "$dir/missing", 'g@x');
    is($code, 100, 'a missing message file: exit 100');
    like($err, qr/cannot read message file '\Q$dir\E\/missing'/, '... naming it');
    ($code, $out, $err) = run("x\n", @server, '--timeout', 'soon', 'g@x');
    is($code, 100, 'a bad timeout: exit 100');
    ($code, $out) = run(undef, '--help');
    is($code, 0, '--help: exit 0');
    like($out, qr/EXIT STATUS/, '... and shows the manual');
}

done_testing;

# qmtp-send end to end against real mailfront: standard input and files,
# the result lines, the progress bar and the exit codes qmail uses.
use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);
use IO::Socket::INET;
use Cwd ();

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
    my $cmd = join ' ', map { quotemeta } $^X, '-Mblib', $script, '-v', @server, 'a@example.org', 'b@example.org';
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
    my ($code, $out) = run("Subject: redirected\n\nbody\0with NUL\n", '-v', 'c@example.org');
    is($code, 0, 'stdin redirected from a file, server and sender from the environment: exit 0');
    like($out, qr/^-\tc\@example\.org\tsuccess: /, '... and a success line');
    ok($mf->wait_queued(1, 5), 'stored');
    is(($mf->queued)[0]{raw}, "\0c\@example.org\0Subject: redirected\n\nbody\0with NUL\n",
        '... with the null sender from QMTPSENDER, byte for byte');
    $mf->clear;
}

# The bar moves a message at a time, however many there are.
{
    my @files = map { write_file("p$_", "Subject: p $_\n\nbody\n") } 1 .. 120;
    my ($code, $out, $err) = run(undef, @server, '--answers', 'package', (map { ('-F', $_) } @files),
        '--progress', 'x@example.org');
    is($code, 0, '120 files: exit 0');
    is_deeply([ $err =~ m{\] (\d+)/120 messages}g ], [ 1 .. 120 ], 'the progress bar counts every message');
    ok($mf->wait_queued(120, 10), 'all 120 stored');
    $mf->clear;
}

# Several files, pipelined on one connection, with a progress bar.
{
    my @files = map { write_file("m$_", "Subject: file $_\n\n" . ("line $_\n" x $_)) } 1 .. 3;
    my ($code, $out, $err) = run(undef, '-v', @server, (map { ('--file', $_) } @files), '--progress', 'x@example.org');
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
    my ($code, $out) = run("x\n", '-v', @server, '--dos', 'd@example.org');
    is($code, 111, 'a deferral (mailfront refuses CR LF): exit 111');
    like($out, qr/\tdeferral: Cannot handle non-LF line terminator$/m, '... with the server\'s text');

    my $limited = Test::Mailfront->start(plugins => ['counters', 'accept'], env => { DATABYTES => 10 });
    ($code, $out) = run("Subject: too long for the limit\n", '-v', '--server', '127.0.0.1', '--port', $limited->port,
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

# Runs qmtp-send with full control of its descriptors. %o: stdin (bytes,
# written to a file), stdin_file (a file name), skip (bytes of standard
# input a wrapper reads before it execs qmtp-send, with the same
# descriptor), stdout ('pipe-closed': a pipe whose reader is gone; else a
# file name, default a file in $dir), env. Returns (exit code, stdout
# (unless given), stderr, the raw wait status).
sub run_full {
    my ($o, @args) = @_;
    my $in = defined $o->{stdin_file} ? $o->{stdin_file}
        : defined $o->{stdin} ? write_file('stdin', $o->{stdin}) : '/dev/null';
    my $outfile = defined $o->{stdout} && $o->{stdout} ne 'pipe-closed' ? $o->{stdout} : "$dir/stdout";
    my ($r, $w);
    if (($o->{stdout} || '') eq 'pipe-closed') {
        pipe $r, $w or die $!;
        close $r;
    }
    my @cmd = ($^X, '-Mblib', $script, @args);
    if ($o->{skip}) {
        # reads part of its standard input, then becomes qmtp-send
        unshift @cmd, $^X, '-e', 'sysread STDIN, my $b, shift @ARGV or die; exec @ARGV or die $!', $o->{skip};
    }
    my $pid = fork;
    die $! unless defined $pid;
    if (!$pid) {
        $SIG{PIPE} = 'DEFAULT';
        %ENV = (%ENV, %{ $o->{env} || {} });
        open STDIN, '<', $in or die $!;
        if ($w) { open STDOUT, '>&', $w or die $! } else { open STDOUT, '>', $outfile or die $! }
        open STDERR, '>', "$dir/stderr" or die $!;
        exec @cmd or die $!;
    }
    close $w if $w;
    waitpid $pid, 0;
    my $status = $?;
    my $slurp = sub { open my $fh, '<', $_[0] or return undef; local $/; my $d = <$fh>; defined $d ? $d : '' };
    my $out = defined $o->{stdout} ? undef : $slurp->($outfile);
    return ($status >> 8, $out, $slurp->("$dir/stderr"), $status);
}

# One message file missing among several: that message's own failure,
# reported; the others are still sent; the exit status is the worst.
{
    my @files = map { write_file("ok$_", "Subject: ok $_\n\nbody $_\n") } 1, 2;
    my $missing = "$dir/no-such-message";
    my ($code, $out, $err) = run_full({}, '-v', @server, '-F', $files[0], '-F', $missing, '-F', $files[1],
        'x@example.org', 'y@example.org');
    is($code, 100, 'one missing file among three: exit 100 (a permanent failure of its own)');
    ok($mf->wait_queued(2, 5), '... the other two are sent');
    is_deeply([ map { $_->{message} } $mf->queued ], [ "Subject: ok 1\n\nbody 1\n", "Subject: ok 2\n\nbody 2\n" ],
        '... in order');
    like($err, qr/^qmtp-send: \Q$missing\E: not sent: cannot read message file '\Q$missing\E': No such file/m,
        '... the missing one reported on standard error');
    is(join('', grep { /^\Q$missing\E\t/ } split /^/, $out),
        "$missing\tx\@example.org\tfailure: not sent: cannot read message file '$missing': No such file or directory\n"
        . "$missing\ty\@example.org\tfailure: not sent: cannot read message file '$missing': No such file or directory\n",
        '... and in its result lines, one per recipient');
    like($out, qr/^\Q$files[1]\E\tx\@example\.org\tsuccess: /m, '... after which the next file has its own');
    $mf->clear;

    ($code, $out, $err) = run_full({}, @server, '--dos', '-F', $missing, '-F', $files[0], 'x@example.org');
    is($code, 111, 'a missing file and a deferral: exit 111 (deferral outranks failure)');
    like($err, qr/^\Q$missing\E\tx\@example\.org\tfailure: not sent: /m, '... both reported');
    like($err, qr/^\Q$files[0]\E\tx\@example\.org\tdeferral: /m, '... both reported (deferral)');

    ($code, $out, $err) = run_full({}, @server, '-F', $dir, '-F', $files[0], 'x@example.org');
    is($code, 100, 'a directory as a message file: exit 100');
    like($err, qr/^\Q$dir\E\tx\@example\.org\tfailure: not sent: cannot read message file '\Q$dir\E': is a directory$/m,
        '... saying so');
    ok($mf->wait_queued(1, 5), '... the other file sent');
    $mf->clear;
}

# -F takes one file: "-F a b c rcpt" must not send a to "recipients" b and c.
{
    my @files = map { write_file($_, "Subject: $_\n\n$_\n") } qw(fa fb fc);
    my ($code, $out, $err) = run_full({}, @server, '-F', @files, 'r@example.org');
    is($code, 100, '-F a b c rcpt: refused with exit 100');
    like($err, qr/^qmtp-send: recipient '\Q$files[1]\E' is the name of a file: -F takes one file/m,
        '... naming the argument');
    like($err, qr/-F FILE \[-F FILE\]\.\.\./, '... the usage says -F takes one file and repeats');
    for my $bad ([ '', qr/an empty recipient/ ], [ 'a b@example.org', qr/recipient 'a b\@example\.org' contains white space/ ],
        [ "a\n\@example.org", qr/recipient 'a\\x0a\@example\.org' contains white space or a control character/ ],
        [ "a\t\@x", qr/recipient 'a\\x09\@x' contains/ ], [ "a\x7f\@x", qr/recipient 'a\\x7f\@x' contains/ ]) {
        ($code, $out, $err) = run_full({ stdin => "x\n" }, @server, 'ok@example.org', $bad->[0]);
        (my $shown = $bad->[0]) =~ s/([^\x20-\x7e])/sprintf('\\x%02x', ord $1)/ge;
        is($code, 100, "recipient '$shown' refused: exit 100");
        like($err, $bad->[1], '... naming it');
    }
    sleep 1;
    is(scalar(() = $mf->queued), 0, 'nothing was sent');
}

# --help renders with core modules alone: never perldoc, never the source.
{
    my $fake = "$dir/fakelib/Pod";
    require File::Path;
    File::Path::make_path($fake);
    write_file('fakelib/Pod/Perldoc.pm', "die 'no perl-doc package here';\n");
    my ($code, $out, $err) = run_full({ env => { PERL5LIB => "$dir/fakelib", PAGER => 'cat' } }, '--help');
    is($code, 0, '--help without perldoc: exit 0');
    like($out, qr/^NAME\n\s+qmtp-send - send mail to a QMTP server$/m, '... a formatted manual');
    like($out, qr/^EXIT STATUS$/m, '... with its sections');
    unlike($out, qr/^=head1|use strict|sub main/m, '... not the source');
    unlike($err, qr/perl-doc/, '... and no "install perl-doc"');
    ($code, $out, $err) = run_full({}, '--frobnicate');
    for my $o ('--connect-timeout', '--debug', '--crlf-to-lf', '--verbose', '--quiet', '--cron', '--maildir',
        '-F, --file FILE            one message file; repeat -F') {
        like($err, qr/\Q$o\E/, "the usage text has $o");
    }
}

# Standard input redirected from a file the caller already read part of:
# sent from the current offset.
{
    my $file = write_file('partial', "SKIPPED\nSubject: rest\n\nthe rest\n");
    my ($code, $out, $err) = run_full({ stdin_file => $file, skip => 8 }, @server, 'o@example.org');
    is($code, 0, 'stdin at an offset: exit 0') or diag $err;
    ok($mf->wait_queued(1, 5), '... sent');
    is(($mf->queued)[0]{message}, "Subject: rest\n\nthe rest\n", '... from the offset the caller left');
    $mf->clear;
    ($code, $out, $err) = run_full({ stdin_file => $file }, @server, 'o@example.org');
    ok($mf->wait_queued(1, 5), 'stdin at offset 0: sent');
    is(($mf->queued)[0]{message}, "SKIPPED\nSubject: rest\n\nthe rest\n", '... whole');
    $mf->clear;
}

# Messages not sent because the connection timed out: "not sent: " once.
# (Enough files that they are pipelined several to a send_many.)
{
    my $stall = IO::Socket::INET->new(Listen => 5, LocalAddr => '127.0.0.1', LocalPort => 0) or die $!;
    my $big = write_file('big', "Subject: big\n\n" . ("x" x 1000 . "\n") x 20000);
    my @small = map { write_file("small$_", "Subject: small\n\nsmall\n") } 1 .. 99;
    my ($code, $out, $err) = run_full({}, '-v', '--server', '127.0.0.1', '--port', $stall->sockport,
        '--timeout', 1, '--connect-timeout', 1, '--answers', 'package', (map { ('-F', $_) } $big, @small),
        'z@example.org');
    is($code, 111, 'a server that stalls: exit 111');
    like($out, qr/^\Q$big\E\tz\@example\.org\tdeferral: not sent: timed out/m, '... the message not sent reported');
    like($out, qr/^\Q$small[0]\E\tz\@example\.org\tdeferral: not sent: the connection timed out/m,
        '... and those not begun');
    like($err, qr/^qmtp-send: \Q$big\E: not sent: timed out/m, '... also on standard error');
    unlike($out . $err, qr/not sent: not sent/, '... with "not sent: " said once');
    is(scalar(() = $out =~ /\tdeferral: not sent: /g), 100, '... every message has its result line');
    close $stall;
}

# Standard output that cannot be written: an exit status in 0/100/111 and a
# message saying what happened.
{
    my $msg = write_file('w1', "Subject: w\n\nw\n");
    my ($code, $out, $err, $status) = run_full({ stdout => '/dev/full' }, '-v', @server, '-F', $msg, 'w@example.org');
    is($status & 127, 0, 'stdout on a full disk: no signal');
    is($code, 111, '... exit 111: the results could not be reported');
    like($err, qr/^qmtp-send: cannot write the results to standard output: No space left on device \(the outcome was: every recipient accepted; exiting 111\)$/m,
        '... saying so, and what the outcome was');
    ok($mf->wait_queued(1, 5), '... the message was still sent');
    $mf->clear;

    ($code, $out, $err, $status) = run_full({ stdout => 'pipe-closed' }, '-v', @server, '-F', $msg, '-F', $msg, 'w@example.org');
    is($status & 127, 0, 'stdout a pipe with no reader: not killed by SIGPIPE');
    is($code, 111, '... exit 111');
    like($err, qr/^qmtp-send: cannot write the results to standard output: Broken pipe/m, '... saying so');
    ok($mf->wait_queued(2, 5), '... both messages still sent');
    $mf->clear;

    ($code, $out, $err, $status) = run_full({ stdout => '/dev/full' }, @server, '-F', $msg, 'w@example.org');
    is($code, 0, 'the default mode writes nothing to stdout: a full stdout does not matter');
    $mf->clear;
    ($code, $out, $err, $status) = run_full({ stdout => '/dev/full' }, '--help');
    is($code, 111, '--help to a full disk: exit 111');
    like($err, qr/^qmtp-send: cannot write the manual to standard output: No space left/m, '... saying so');
}

# A port that names no service is a configuration error (100), not a
# temporary one; a host name that does not resolve stays temporary.
{
    my ($code, $out, $err) = run_full({ stdin => "x\n" }, '--server', '127.0.0.1', '--port', 'nosuchservice', 'p@x');
    is($code, 100, 'an unknown port name: exit 100');
    like($err, qr/^qmtp-send: unknown port 'nosuchservice': neither a number nor a TCP service name/m, '... saying why');
    ($code, $out, $err) = run_full({ stdin => "x\n" }, '--server', '127.0.0.1:nosuchservice', 'p@x');
    is($code, 100, 'an unknown port name in HOST:PORT: exit 100');
    like($err, qr/unknown port 'nosuchservice'/, '... saying why');
    ($code, $out, $err) = run_full({ stdin => "x\n" }, '--server', '[::1]:nosuchservice', 'p@x');
    is($code, 100, 'an unknown port name in [v6]:PORT: exit 100');
    ($code, $out, $err) = run_full({ stdin => "x\n" }, '--server', 'no-such-host.invalid', '--connect-timeout', 5, 'p@x');
    is($code, 111, 'a host name that does not resolve: exit 111 (may be a passing DNS failure)');
    like($err, qr/^qmtp-send: cannot resolve 'no-such-host\.invalid'/m, '... saying why');
}

# --debug traces on standard error.
{
    my ($code, $out, $err) = run_full({ stdin => "Subject: dbg\n\nx\n" }, @server, '--debug', 'dbg@example.org');
    is($code, 0, '--debug: exit 0');
    like($err, qr/>>>/, '... the protocol traced on standard error');
    is($out, '', '... nothing on standard output');
    $mf->clear;
}

# --crlf-to-lf: CR LF line ends become LF, sent with the unix encoding, so
# mailfront stores no CR.
{
    my $dosmsg = "Subject: from Windows\r\nX-Lone: a\rb\r\n\r\nline 1\r\nline 2\r\n";
    my $unixmsg = "Subject: from Windows\nX-Lone: a\rb\n\nline 1\nline 2\n";
    my $f = write_file('dos', $dosmsg);
    # a CR LF across the 64 KiB blocks it is converted in
    my $edge = ('y' x 65535) . "\r\n" . "end\r\n";
    my $g = write_file('edge', "Subject: edge\r\n\r\n" . $edge);
    my ($code, $out, $err) = run_full({}, @server, '--crlf-to-lf', '-F', $f, '-F', $g, 'crlf@example.org');
    is($code, 0, '--crlf-to-lf with files: exit 0') or diag $err;
    ok($mf->wait_queued(2, 5), '... sent');
    my @q = $mf->queued;
    is($q[0]{message}, $unixmsg, '... CR LF converted to LF, a lone CR left alone');
    is($q[1]{message}, "Subject: edge\n\n" . ('y' x 65535) . "\nend\n", '... also across a block boundary');
    unlike(join('', map { $_->{message} } @q), qr/\r\n/, '... no CR LF stored');
    $mf->clear;
    ($code, $out, $err) = run_full({ stdin => $dosmsg }, @server, '--crlf-to-lf', 'crlf@example.org');
    ok($mf->wait_queued(1, 5), '--crlf-to-lf, stdin from a file: sent');
    is(($mf->queued)[0]{message}, $unixmsg, '... converted');
    $mf->clear;
    ($code, $out, $err) = run_full({ stdin_file => $f, skip => 23 }, @server, '--crlf-to-lf', 'crlf@example.org');
    ok($mf->wait_queued(1, 5), '--crlf-to-lf, stdin from a file at an offset: sent');
    is(($mf->queued)[0]{message}, "X-Lone: a\rb\n\nline 1\nline 2\n", '... from the offset, converted');
    $mf->clear;
    my $cmd = join ' ', map { quotemeta } $^X, '-Mblib', $script, @server, '--crlf-to-lf', 'crlf@example.org';
    system("printf 'Subject: piped\\r\\n\\r\\nbody\\r\\n' | $cmd");
    is($? >> 8, 0, '--crlf-to-lf, stdin from a pipe: exit 0');
    ok($mf->wait_queued(1, 5), '... sent');
    is(($mf->queued)[0]{message}, "Subject: piped\n\nbody\n", '... converted');
    $mf->clear;
    ($code, $out, $err) = run_full({ stdin => $dosmsg }, @server, 'crlf@example.org');
    ok($mf->wait_queued(1, 5), 'without --crlf-to-lf, sent as it is');
    is(($mf->queued)[0]{message}, $dosmsg, '... CR bytes and all');
    $mf->clear;
    ($code, $out, $err) = run_full({ stdin => $dosmsg }, @server, '--dos', '--crlf-to-lf', 'crlf@example.org');
    is($code, 100, '--dos with --crlf-to-lf: a usage error');
}

# The progress bar and result lines on the same terminal (a tmux pane):
# the bar is taken off its line first, so nothing runs together.
SKIP: {
    my ($tmux) = grep { -x "$_/tmux" } split /:/, $ENV{PATH} || '';
    skip 'tmux not installed: the terminal is not checked', 6 unless $tmux;
    $tmux .= '/tmux';
    my $sock = "$dir/tmux.sock";
    my @files = map { write_file("tty$_", "Subject: tty $_\n\n$_\n") } 1 .. 4;
    my $pane = sub {
        my ($pre, @args) = @_;
        my $cmd = join ' ', map { quotemeta } $^X, '-Mblib', $script, @args;
        $cmd = "cd " . quotemeta(Cwd::getcwd()) . " && $pre$cmd; rc=\$?; echo; echo DONE-\$rc; sleep 60";
        local $ENV{TERM} = 'xterm';
        system($tmux, '-S', $sock, '-f', '/dev/null', 'new-session', '-d', '-x', 250, '-y', 50, $cmd) == 0
            or return;
        my $screen = '';
        for (1 .. 300) {
            $screen = `\Q$tmux\E -S \Q$sock\E capture-pane -p 2>/dev/null`;
            last if $screen =~ /^DONE-\d+/m;
            select undef, undef, undef, 0.05;
        }
        system($tmux, '-S', $sock, 'kill-server');
        return $screen;
    };
    my $screen = $pane->('', '-v', '--progress', @server, (map { ('-F', $_) } @files), 't@example.org');
    skip 'tmux could not run a session here', 6 unless defined $screen && $screen =~ /^DONE-(\d+)/m;
    like($screen, qr/^DONE-0$/m, 'on a terminal: exit 0');
    my @lines = grep { /success/ } split /\n/, $screen;
    is(scalar @lines, 4, '... four result lines') or diag $screen;
    is(scalar(grep { /^\Q$dir\E\/tty\d\s+t\@example\.org\s+success: 2\.6\.0 Message accepted\.\s*$/ } @lines), 4,
        '... each on a line of its own, not run into the bar') or diag $screen;
    like($screen, qr/^\[#{30}\] 4\/4 messages\s*$/m, '... the bar ends on a line of its own');
    $mf->clear;
    $screen = $pane->('', '--dos', '--progress', @server, (map { ('-F', $_) } @files), 't@example.org');
    @lines = grep { /deferral/ } split /\n/, $screen || '';
    is(scalar(grep { /^\Q$dir\E\/tty\d\s+t\@example\.org\s+deferral: / && !/messages/ } @lines), 4,
        'deferrals on standard error, the same terminal: each on a line of its own') or diag $screen;
    like($screen, qr/^DONE-111$/m, '... exit 111');
}

done_testing;

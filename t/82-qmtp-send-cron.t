# qmtp-send's output modes against real mailfront. The default (--cron)
# prints nothing when every recipient accepted and every deferral and
# failure on standard error; --verbose prints every result line on
# standard output; --quiet prints nothing at all. The exit status is the
# worst outcome over all messages (111 over 100 over 0) in every mode.
use strict;
use warnings;
use Test::More;
use File::Spec;
use File::Temp qw(tempdir);
use IO::Socket::INET;

use lib 't/lib';
use Test::Mailfront;

Test::Mailfront->require_or_skip;
alarm 120;

my $dir = tempdir(CLEANUP => 1);
my $script = File::Spec->rel2abs(-f 'blib/script/qmtp-send' ? 'blib/script/qmtp-send' : 'bin/qmtp-send');

sub write_file {
    my ($name, $bytes) = @_;
    open my $fh, '>:raw', "$dir/$name" or die $!;
    print $fh $bytes;
    close $fh;
    return "$dir/$name";
}

sub slurp {
    open my $fh, '<', $_[0] or die "$_[0]: $!";
    local $/;
    my $d = <$fh>;
    return defined $d ? $d : '';
}

# Runs qmtp-send (or, with a code string in $pre, perl -e $pre $script ...)
# with standard input from a file; returns (exit code, stdout, stderr).
sub run {
    my ($stdin, @args) = @_;
    my $in = defined $stdin ? write_file('stdin', $stdin) : '/dev/null';
    my $cmd = join ' ', map { quotemeta } $^X, '-Mblib', $script, @args;
    system("$cmd <$in >$dir/stdout 2>$dir/stderr");
    return ($? >> 8, slurp("$dir/stdout"), slurp("$dir/stderr"));
}

my $mf = Test::Mailfront->start;
my @server = ('--server', '127.0.0.1', '--port', $mf->port, '--sender', 'me@example.org');
my $limited = Test::Mailfront->start(plugins => ['counters', 'accept'], env => { DATABYTES => 40 });
my @limited = ('--server', '127.0.0.1', '--port', $limited->port, '--sender', 'me@example.org');

my $small = write_file('small', "Subject: s\n\nok\n");
my $big = write_file('big', "Subject: far too long for the limit\n\n" . ("x" x 100) . "\n");
my $missing = "$dir/missing";

# The default: cron's.
{
    my ($code, $out, $err) = run("Subject: ok\n\nbody\n", @server, 'a@example.org', 'b@example.org');
    is($code, 0, 'default mode, all accepted: exit 0');
    is($out, '', '... nothing on standard output');
    is($err, '', '... nothing on standard error');
    ok($mf->wait_queued(1, 5), '... sent');
    $mf->clear;

    ($code, $out, $err) = run(undef, @server, '--cron', '-F', $small, '-F', $small, 'a@example.org');
    is($code, 0, '--cron, two files accepted: exit 0');
    is($out . $err, '', '... nothing printed');
    $mf->clear;

    ($code, $out, $err) = run("x\n", @server, '--dos', 'd@example.org', 'e@example.org');
    is($code, 111, 'default mode, a deferral: exit 111');
    is($out, '', '... nothing on standard output');
    like($err, qr/\A-\td\@example\.org\tdeferral: Cannot handle non-LF line terminator\n-\te\@example\.org\tdeferral: /,
        '... each deferral on standard error, one line per recipient');

    ($code, $out, $err) = run(undef, @limited, '-F', $small, '-F', $big, '-F', $small, 'f@example.org');
    is($code, 100, 'default mode, one failure among accepted messages: exit 100');
    is($out, '', '... nothing on standard output');
    like($err, qr/\A\Q$big\E\tf\@example\.org\tfailure: 5\.2\.3 [^\n]*\n\z/, '... only the failure, on standard error');
    $limited->clear;

    ($code, $out, $err) = run(undef, @server, '--dos', '-F', $missing, '-F', $small, 'g@example.org');
    is($code, 111, 'a failure and a deferral: exit 111');
    is($err, "$missing\tg\@example.org\tfailure: not sent: cannot read message file '$missing': No such file or directory\n"
        . "$small\tg\@example.org\tdeferral: Cannot handle non-LF line terminator\n",
        '... both on standard error, in order, each once');

    my $gone = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0) or die $!;
    my $dead = $gone->sockport;
    close $gone;
    ($code, $out, $err) = run("x\n", '--server', "127.0.0.1:$dead", 'h@example.org');
    is($code, 111, 'default mode, server unreachable: exit 111');
    like($err, qr/\Aqmtp-send: cannot connect to 127\.0\.0\.1.*refused/i, '... said on standard error');
}

# --verbose: every result line on standard output.
{
    my ($code, $out, $err) = run(undef, @limited, '-v', '-F', $small, '-F', $big, 'i@example.org', 'j@example.org');
    is($code, 100, '--verbose, a failure: exit 100');
    like($out, qr/\A\Q$small\E\ti\@example\.org\tsuccess: [^\n]*\n\Q$small\E\tj\@example\.org\tsuccess: [^\n]*\n\Q$big\E\ti\@example\.org\tfailure: 5\.2\.3 [^\n]*\n\Q$big\E\tj\@example\.org\tfailure: /,
        '... every result on standard output, successes included');
    is($err, '', '... nothing on standard error');
    $limited->clear;
}

# --quiet: nothing at all; the exit status tells.
{
    my ($code, $out, $err) = run(undef, @limited, '-q', '-F', $small, '-F', $big, 'k@example.org');
    is($code, 100, '--quiet, a failure: exit 100');
    is($out . $err, '', '... and nothing printed, not even the failure');
    ($code, $out, $err) = run("x\n", @server, '-q', '--dos', 'l@example.org');
    is($code, 111, '--quiet, a deferral: exit 111');
    is($out . $err, '', '... nothing printed');
    ($code, $out, $err) = run(undef, @server, '-q', '-F', $missing, 'l@example.org');
    is($code, 100, '--quiet, a missing file: exit 100');
    is($out . $err, '', '... nothing printed');
    ($code, $out, $err) = run("x\n", @server, '-q');
    is($code, 100, '--quiet, a wrong command line: exit 100');
    like($err, qr/no recipient given/, '... still said');
    $limited->clear;
    $mf->clear;
}

# The last of --cron, --verbose and --quiet wins.
{
    my ($code, $out, $err) = run("x\n", @server, '-v', '-q', 'm@example.org');
    is($code . $out . $err, '0', '-v -q: quiet');
    ($code, $out, $err) = run("x\n", @server, '-q', '-v', 'm@example.org');
    like($out, qr/\A-\tm\@example\.org\tsuccess: /, '-q -v: verbose');
    ($code, $out, $err) = run("x\n", @server, '--dos', '-v', '--cron', 'm@example.org');
    is($out, '', '-v --cron: cron');
    like($err, qr/deferral/, '... the deferral on standard error');
    $mf->clear;
}

# --maildir hands over to Net::QMTP::Maildir::run_cli(\%opt, DIR, PREFIX)
# after the options are parsed. A stand-in module shows what it gets.
{
    my $stub = <<'EOS';
$INC{'Net/QMTP/Maildir.pm'} = __FILE__;
sub Net::QMTP::Maildir::run_cli {
    my ($opt, @args) = @_;
    print join("\n", map({ "$_=" . (defined $opt->{$_} ? $opt->{$_} : 'undef') }
        qw(server port timeout connect-timeout answers debug verbose quiet max-age)), "args=@args"), "\n";
    return 42;
}
my $script = shift @ARGV;
$0 = $script;
do $script;
die $@ if $@;
EOS
    my $cmd = join ' ', map { quotemeta } $^X, '-Mblib', '-e', $stub, $script, '--maildir', '-s', 'mx.example',
        '-p', '2209', '-t', '5', '--connect-timeout', '3', '--answers', 'package', '--debug', '-v', '--max-age', 3600,
        '/var/q', 'pre-';
    my $out = `$cmd 2>&1`;
    is($? >> 8, 42, '--maildir: run_cli\'s return is the exit status');
    is($out, "server=mx.example\nport=2209\ntimeout=5\nconnect-timeout=3\nanswers=package\ndebug=1\nverbose=1\n"
        . "quiet=0\nmax-age=3600\nargs=/var/q pre-\n", '... given the options and DIR PREFIX');
    $out = `$^X -Mblib $script --max-age 3 x\@example.org 2>&1 </dev/null`;
    is($? >> 8, 100, '--max-age without --maildir: a usage error');
}

# Standard input closed: perl opens the script itself on descriptor 0,
# which must never go out as the message.
{
    my $cmd = join ' ', map { quotemeta } $^X, '-Mblib', $script, '-v', @server, 'a@example.org';
    $mf->clear if $mf->can('clear');
    system("$cmd <&- >$dir/stdout 2>$dir/stderr");
    my $code = $? >> 8;
    is($code, 100, 'standard input closed: exit 100');
    like(slurp("$dir/stderr"), qr/standard input: it is closed/, '... saying so');
    unlike(slurp("$dir/stdout"), qr/success/, '... and nothing was sent');
}

# A FIFO given with -F is refused, not waited on.
{
    require POSIX;
    my $fifo = "$dir/fifo";
    POSIX::mkfifo($fifo, 0600) or die "mkfifo: $!";
    my $t0 = time;
    my ($code, $out, $err) = run(undef, @server, '-F', $fifo, '-F', $small, 'a@example.org');
    cmp_ok(time - $t0, '<', 20, '-F FIFO: qmtp-send does not wait for a writer');
    is($code, 100, '... the FIFO is that message\'s failure: 100');
    like($err, qr/not a regular file/, '... saying why');
}

done_testing;

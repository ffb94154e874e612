# README is written for users, by hand. Check what it promises: its length,
# that its QUICK START commands are the ones examples/demo.sh and .ci/run
# (and the POD) use, that its Perl example compiles and calls only methods
# and options that exist, and that the commands, options, packages and
# files it names exist.
use strict;
use warnings;
use Test::More;

sub slurp {
    my ($file) = @_;
    open my $fh, '<', $file or die "$file: $!";
    local $/;
    return scalar <$fh>;
}

my $readme = slurp('README');
my @lines = split /\n/, $readme;
cmp_ok(scalar @lines, '<', 200, 'README is under 200 lines') or diag(scalar(@lines) . ' lines');

# README's sections: a title line underlined with - or =.
my (%section, $title);
for my $i (0 .. $#lines) {
    if ($i < $#lines && $lines[$i + 1] =~ /\A[-=]{3,}\z/ && $lines[$i] =~ /\S/) {
        $title = $lines[$i];
        next;
    }
    next if $lines[$i] =~ /\A[-=]{3,}\z/;
    push @{ $section{$title} }, $lines[$i] if defined $title;
}
# A code block: lines indented by 4 spaces or more (list items by 3).
sub code_lines { map { /\A    (.*\S.*)\z/ ? $1 : () } @{ $_[0] || [] } }

# QUICK START: exactly two commands, the main job and the test command.
my @quick = code_lines($section{'QUICK START'});
is(scalar @quick, 2, 'QUICK START shows exactly two commands') or diag(join "\n", @quick);
is($quick[0], 'bash examples/demo.sh', 'the first runs the demo');
ok(-f 'examples/demo.sh', 'examples/demo.sh exists');
my ($ci_last) = grep { /\S/ && !/\A\s*#/ } reverse split /\n/, slurp('.ci/run');
is($quick[1], $ci_last, 'the second is the test command .ci/run ends with');
like(join(' ', @{ $section{'QUICK START'} || [] }), qr/\.ci\/run/, 'QUICK START says CI runs it via .ci/run');

# The POD's QUICK START promises the same two commands.
my $pod = slurp('lib/Net/QMTP.pm');
my ($pod_quick) = $pod =~ /^=head1 QUICK START\n(.*?)^=head1 /ms;
my @pod_cmds = defined $pod_quick ? map { /\A {4}(\S.*)\z/ ? $1 : () } split /\n/, $pod_quick : ();
is_deeply(\@pod_cmds, \@quick, 'the POD of Net::QMTP shows the same QUICK START commands');

# The Perl example: it compiles under strict and warnings (helpers such as
# retry_later() are the reader's; perl -c does not call them).
my @example = code_lines($section{'Sending mail from Perl'});
ok(scalar(grep { /\Ause Net::QMTP;/ } @example), 'the Perl example is found');
require File::Temp;
my $out = File::Temp->new(SUFFIX => '.pl');
print {$out} "use strict;\nuse warnings;\n", map { "$_\n" } @example;
close $out or die "$out: $!";
my $compiled = `"$^X" ${\ join ' ', map { qq{"-I$_"} } grep { !ref } @INC} -c "$out" 2>&1`;
is($?, 0, 'the Perl example compiles') or diag($compiled);
like(join("\n", @example), qr/new_envelope.*new_message.*->send\b/s,
     'the example clears envelope and message before each send');
like(join("\n", @example), qr/success: .*failure: /s, 'the example checks each recipient\'s result');

# Every method README calls exists, and every constructor option it names
# is documented.
require Net::QMTP;
my %called = map { $_ => 1 } $readme =~ /(?<!Transport::QMTP)->(\w+)/g;
for my $method (sort keys %called) {
    ok(Net::QMTP->can($method), "README calls Net::QMTP->$method, which exists");
}
for my $call ($readme =~ /Net::QMTP->new\(([^)]*)\)/g) {
    for my $option ($call =~ /(\w+)\s*=>/g) {
        like($pod, qr/^=item \Q$option\E\n/m, "option $option is documented in Net::QMTP");
    }
}
my $prose = join "\n", grep { !/\A    / } @lines;
for my $method ($prose =~ /\b([a-z_]+)\(\)/g) {
    ok(Net::QMTP->can($method), "README names $method(), which exists");
}

# Every --option README gives belongs to qmtp-send, which documents it.
my $script = slurp('bin/qmtp-send');
my %options = map { $_ => 1 } $readme =~ /(?<![\w-])--([a-z][a-z-]*)/g;
ok(scalar(keys %options), 'README shows qmtp-send options');
for my $option (sort keys %options) {
    like($script, qr/^=item B<--\Q$option\E>/m, "qmtp-send documents --$option");
}

# The Debian packages README installs are those CI and the demo install.
my $installed = slurp('.ci/run') . slurp('examples/demo.sh');
for my $line ($readme =~ /apt-get install ([^\n]+)/g) {
    for my $package (split ' ', $line) {
        next if $package =~ /\A-/;
        like($installed, qr/apt-get install[^\n]* \Q$package\E\b/, "Debian package $package is installed by .ci/run or the demo");
    }
}

# The pages and files it points to exist.
my %page = ('Net::QMTP' => 'lib/Net/QMTP.pm', 'Net::QMTP::Internals' => 'lib/Net/QMTP/Internals.pod',
            'qmtp-send' => 'bin/qmtp-send',
            'Net::QMTP::AnyEvent' => 'lib/Net/QMTP/AnyEvent.pm', 'Net::QMTP::Mojo' => 'lib/Net/QMTP/Mojo.pm',
            'Email::Sender::Transport::QMTP' => 'lib/Email/Sender/Transport/QMTP.pm');
for my $name ($readme =~ /perldoc ([\w:-]+)/g) {
    ok($page{$name} && -f $page{$name}, "perldoc $name: its page is in the distribution");
}
for my $name (qw(Changes .ci/run examples/demo.sh)) {
    next unless index($readme, $name) >= 0;
    ok(-f $name, "$name, named in README, exists");
}

done_testing;

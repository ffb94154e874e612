# README is generated from the POD of Net::QMTP (make README); it must not drift.
use strict;
use warnings;
use Test::More;
use Pod::Text;

my $want = '';
my $parser = Pod::Text->new(width => 76, indent => 4, sentence => 0);
$parser->output_string(\$want);
$parser->parse_file('lib/Net/QMTP.pm');
open my $fh, '<', 'README' or die "README: $!";
my $have = do { local $/; <$fh> };
ok($have eq $want, 'README matches the POD of lib/Net/QMTP.pm (regenerate with: make README)');
done_testing;

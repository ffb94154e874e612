# The C core's own test program (c_src/t/test_core.c), built with this
# perl's C compiler: netstring truncation ladders at a guard page, and the
# engine against a forked peer.
use strict;
use warnings;
use Test::More;
use Config;

my $cc = $Config{cc} || 'cc';
my $out = `make -s -C c_src/t CC='$cc' test_core 2>&1`;
is($?, 0, "c_src/t/test_core builds with $cc") or diag $out;
$out = `c_src/t/test_core 2>&1`;
is($?, 0, 'c_src/t/test_core passes') or diag $out;
like($out, qr/^(\d+) passed, 0 failed$/m, 'it reports its checks');
note $out;
done_testing;

use strict;
use warnings;
use Test::More;
eval { require Test::Pod::Coverage; Test::Pod::Coverage->VERSION(1.08); 1 }
    or plan skip_all => 'Test::Pod::Coverage 1.08 needed (Debian: libtest-pod-coverage-perl)';
# Every public method is documented; _private ones and perl's own hooks are not.
Test::Pod::Coverage::pod_coverage_ok('Net::QMTP', { also_private => [qr/^(?:CLONE_SKIP|DESTROY)$/] });
done_testing;

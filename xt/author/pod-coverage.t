use strict;
use warnings;
use Test::More;
eval { require Test::Pod::Coverage; Test::Pod::Coverage->VERSION(1.08); 1 }
    or plan skip_all => 'Test::Pod::Coverage 1.08 needed (Debian: libtest-pod-coverage-perl)';
# Every public method is documented; _private ones and perl's own hooks are not.
Test::Pod::Coverage::pod_coverage_ok('Net::QMTP', { also_private => [qr/^(?:CLONE_SKIP|DESTROY)$/] });
Test::Pod::Coverage::pod_coverage_ok('Net::QMTP::Async');
SKIP: {
    skip 'AnyEvent not installed: its adapter is not checked', 1 unless eval { require AnyEvent; 1 };
    Test::Pod::Coverage::pod_coverage_ok('Net::QMTP::AnyEvent');
}
SKIP: {
    skip 'Mojolicious not installed: its adapter is not checked', 1 unless eval { require Mojo::IOLoop; 1 };
    Test::Pod::Coverage::pod_coverage_ok('Net::QMTP::Mojo');
}
SKIP: {
    skip 'IO::Async or Future not installed: its adapter is not checked', 1
        unless eval { require IO::Async::Loop; require Future; 1 };
    Test::Pod::Coverage::pod_coverage_ok('Net::QMTP::IOAsync');
}
SKIP: {
    skip 'Email::Sender not installed: the transport is not checked', 2
        unless eval { require Email::Sender::Transport::QMTP; 1 };
    # Moo's and Email::Sender's hooks, and the results it builds, are theirs.
    my $private = [qr/^(?:BUILD|BUILDARGS|success|partial_success|DOES|does)$/];
    Test::Pod::Coverage::pod_coverage_ok($_, { also_private => $private })
        for qw(Email::Sender::Transport::QMTP Email::Sender::Transport::QMTP::Persistent);
}
done_testing;

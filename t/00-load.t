use strict;
use warnings;
use Test::More tests => 3;

use_ok('Net::QMTP');
ok($Net::QMTP::VERSION > 0.06, "version $Net::QMTP::VERSION is newer than the 0.06 it replaces");
ok(Net::QMTP->can('_send'), 'the XS part is loaded');

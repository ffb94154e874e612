package Test::EmailSender;

# What the Email::Sender transport tests need beyond Net::QMTP: Email::Sender
# and Email::Stuffer. Missing on a user's machine, the test skips, saying
# what to install; in CI (NET_QMTP_REQUIRE_EMAIL_SENDER=1) it fails.

use strict;
use warnings;

sub require_or_skip {
	my @missing = grep { !eval "require $_; 1" } qw(Email::Sender::Simple Email::Stuffer Email::MIME);
	return 1 unless @missing;
	require Test::More;
	my $what = join ', ', @missing;
	if ($ENV{NET_QMTP_REQUIRE_EMAIL_SENDER}) {
		Test::More::BAIL_OUT("NET_QMTP_REQUIRE_EMAIL_SENDER is set but $what cannot be loaded");
	}
	Test::More::plan(skip_all => "$what not installed (Debian: libemail-sender-perl, libemail-stuffer-perl)");
	return 0;
}

# Email::Sender::Simple keeps the transport it made from the environment;
# each case that sets the environment starts afresh.
sub simple_from_env {
	my (%env) = @_;
	delete @ENV{ grep { /^EMAIL_SENDER_TRANSPORT/ } keys %ENV };
	@ENV{ keys %env } = values %env;
	Email::Sender::Simple->reset_default_transport;
}

1;

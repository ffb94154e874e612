package Email::Sender::Transport::QMTP::Persistent;

use strict;
use warnings;

our $VERSION = '1.00';

use Email::Sender::Transport::QMTP; # says what to install when Email::Sender is missing
use Moo;
extends 'Email::Sender::Transport::QMTP';

# The connection stays open after a send. Before each message Net::QMTP
# checks it (closed by the server while idle, older than its session
# limit) and opens a new one when it must, sending again a message that
# could not begin on the old one.
sub _persistent { 1 }

no Moo;
1;

__END__

=head1 NAME

Email::Sender::Transport::QMTP::Persistent - a QMTP transport that keeps its connection

=head1 SYNOPSIS

 use Email::Sender::Simple qw(sendmail);
 use Email::Sender::Transport::QMTP::Persistent;

 my $transport = Email::Sender::Transport::QMTP::Persistent->new(
     host => 'mx.example.org', answers => 'package');
 sendmail($_, { transport => $transport }) for @emails;
 $transport->disconnect;

 # or: EMAIL_SENDER_TRANSPORT=QMTP::Persistent EMAIL_SENDER_TRANSPORT_host=mx.example.org

=head1 DESCRIPTION

As L<Email::Sender::Transport::QMTP>, with the same attributes and results,
but the connection opened by the first C<send> stays open for the next
ones, as L<Email::Sender::Transport::SMTP::Persistent> does for SMTP.

Before each message the connection is checked: one the server closed
while it sat idle, or one older than an hour (Net::QMTP's
C<SessionLimit>), is replaced by a new one, and a message that could not
begin on the old connection is sent on the new one. After a failure the
connection is closed and the next C<send> opens a new one. When no
connection can be opened, C<send> throws an
L<Email::Sender::Failure::Temporary> and the next C<send> tries again.

A forked child does not use its parent's connection: its first C<send>
opens its own, and the parent's stays the parent's. A new thread does the
same.

=head1 METHODS

=head2 disconnect

Closes the connection; the next C<send> opens a new one. Destroying the
transport closes it too.

=head1 SEE ALSO

L<Email::Sender::Transport::QMTP>, L<Net::QMTP>.

=head1 LICENSE

Same terms as Perl itself.

=cut

package Net::QMTP::AnyEvent;

# Net::QMTP's non-blocking send (send_async) watched by AnyEvent: the
# descriptor and deadline the engine asks for become AnyEvent watchers,
# made afresh whenever the engine's connection or wishes change.

use strict;
use warnings;

use Carp ();
use Scalar::Util ();

BEGIN {
    eval { require AnyEvent; 1 }
        or Carp::croak('Net::QMTP::AnyEvent needs AnyEvent: install it from CPAN, '
            . "or on Debian: apt-get install libanyevent-perl\n($@)");
}

our $VERSION = '1.00';

# Errors in the caller's arguments are reported at the caller's line.
our @CARP_NOT = ('Net::QMTP', 'Net::QMTP::Async');

sub send {
    my ($class, $q, @args) = @_;
    Carp::croak('Net::QMTP::AnyEvent->send: needs a Net::QMTP object')
        unless Scalar::Util::blessed($q) && $q->isa('Net::QMTP');
    my $op = $q->send_async(@args);
    _arm($op, $q);
    return $op;
}

# Watches what the engine waits for now; nothing once the send is over.
sub _arm {
    my ($op, $q) = @_;
    my ($fd, $read, $write, $after, $serial, $ready) = Net::QMTP::Async::_wants($op, $q, \&_arm) or return;
    my $watch = $op->watch;
    # A descriptor number seen before may be another connection by now.
    if (!defined $fd || !defined $watch->{fd} || $watch->{fd} != $fd || $watch->{serial} != $serial) {
        delete @$watch{qw(r w)};
        @$watch{qw(fd serial)} = ($fd, $serial);
    }
    if (defined $fd && $read) {
        $watch->{r} ||= AnyEvent->io(fh => $fd, poll => 'r', cb => sub { $ready->(1, 0) });
    } else {
        delete $watch->{r};
    }
    if (defined $fd && $write) {
        $watch->{w} ||= AnyEvent->io(fh => $fd, poll => 'w', cb => sub { $ready->(0, 1) });
    } else {
        delete $watch->{w};
    }
    $watch->{t} = AnyEvent->timer(after => $after, cb => sub { $ready->(0, 0) });
    return;
}

1;

__END__

=head1 NAME

Net::QMTP::AnyEvent - send with Net::QMTP from an AnyEvent program

=head1 SYNOPSIS

  use AnyEvent;
  use Net::QMTP;
  use Net::QMTP::AnyEvent;

  my $qmtp = Net::QMTP->new('192.0.2.25', DeferConnect => 1, Timeout => 30);
  my $cv = AnyEvent->condvar;
  Net::QMTP::AnyEvent->send($qmtp,
      jobs      => [ { sender => 'me@example.org', recipients => ['you@example.net'],
                       message => $message } ],
      on_result => sub { my ($result, $index) = @_; warn $result->{error} unless $result->{ok} },
      on_done   => sub { my ($count, $error) = @_; $cv->send },
  );
  $cv->recv;   # or go on serving other clients

=head1 DESCRIPTION

Starts L<Net::QMTP/send_async> and lets AnyEvent's watchers drive it: the
send waits for nothing, and the program serves its other clients while
the server answers. It takes send_async's arguments and returns what that
returns (an object with C<cancel> and C<pending>). Every timeout of the
Net::QMTP object applies, as in the blocking calls.

The watchers belong to the send: they go when it ends, when it is
cancelled (C<< $op->cancel >> or C<< $qmtp->async_cancel >>), and when the
Net::QMTP object is destroyed (which cancels the send). The callbacks hold
no reference to the object: keep it yourself while the send runs.

This module needs L<AnyEvent> (Debian: libanyevent-perl) only when it is
loaded; Net::QMTP does not.

=head1 METHODS

=head2 send($qmtp, OPTIONS)

A class method: starts C<< $qmtp->send_async(OPTIONS) >> on the Net::QMTP
object, watched by AnyEvent, and returns what send_async returns. OPTIONS
are send_async's. Dies at your line for anything send_async would die for.

=head1 SEE ALSO

L<Net::QMTP> (SENDING WITHOUT BLOCKING), L<Net::QMTP::Mojo>, L<AnyEvent>.

=cut

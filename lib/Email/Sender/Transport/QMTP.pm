package Email::Sender::Transport::QMTP;

use strict;
use warnings;

our $VERSION = '1.00';

# The one part of the distribution that needs Email::Sender (and Moo, which
# it brings). Without it, loading says what to install instead of naming a
# missing file deep in Moo.
BEGIN {
    unless (eval { require Moo; require Email::Sender::Transport; 1 }) {
        my $why = $@;
        $why =~ s/\n.*//s;
        die "Email::Sender::Transport::QMTP needs Email::Sender, which could not be loaded: "
            . "install it (Debian: libemail-sender-perl; CPAN: Email::Sender). The error was: $why\n";
    }
}

use Moo;
use Email::Sender::Failure;
use Email::Sender::Failure::Multi;
use Email::Sender::Failure::Permanent;
use Email::Sender::Failure::Temporary;
use Email::Sender::Role::HasMessage ();
use Email::Sender::Success::Partial;
use Net::QMTP;
use Scalar::Util ();

# Dies naming the caller's line: the first one outside this transport,
# Moo's constructors and Email::Sender's layers (its roles, Simple, and
# the Try::Tiny they use), which Carp's notion of trust cannot skip.
my $OURS = qr/\A(?:Email::Sender|Email::Stuffer|Email::Abstract|Try::Tiny|Moo|Method::Generate|Sub::Quote)\b/;

sub _croak {
    my ($why) = @_;
    for (my $i = 0; my @frame = caller $i; $i++) {
        next if $frame[0] =~ $OURS;
        die "Email::Sender::Transport::QMTP: $why at $frame[1] line $frame[2].\n";
    }
    die "Email::Sender::Transport::QMTP: $why\n";
}

my %ARG = map { $_ => 1 } qw(host hosts port timeout connect_timeout total_timeout local_address
    answers debug encoding crlf_to_lf allow_partial_success ssl ssl_options);

# Net::QMTP's options, as this transport names them.
my %OPTION_NAME = (Port => 'port', Timeout => 'timeout', ConnectTimeout => 'connect_timeout',
    TotalTimeout => 'total_timeout', LocalAddr => 'local_address', Answers => 'answers',
    Server => 'host');

# Arguments come from code or, through Email::Sender::Simple, from the
# environment as strings (EMAIL_SENDER_TRANSPORT_host=...): a list of
# servers may be one string, "a.example, b.example:2209". A name that is
# not an argument dies: a typo would otherwise go unnoticed.
sub BUILDARGS {
    my ($class, @args) = @_;
    my %arg = %{ $class->SUPER::BUILDARGS(@args) }; # a copy: the caller's hash stays as it was
    delete @arg{ grep { !defined $arg{$_} } keys %arg }; # undef: not given, the default holds
    my @unknown = sort grep { !$ARG{$_} } keys %arg;
    _croak('unknown argument' . (@unknown > 1 ? 's ' : ' ')
        . join(', ', map { "'$_'" } @unknown) . '; known are ' . join(', ', sort keys %ARG)) if @unknown;
    if (exists $arg{hosts}) {
        _croak('give host or hosts, not both') if exists $arg{host};
        $arg{host} = delete $arg{hosts};
    }
    if (exists $arg{host}) {
        my $host = $arg{host};
        my @list = ref $host eq 'ARRAY' ? @$host : !ref $host ? split(/,/, $host, -1) : ();
        if (!ref $host) {
            s/\A\s+//, s/\s+\z// for @list;
        }
        my $what = "host must be a server or a list of servers (an array reference or 'a.example, b.example')";
        _croak("$what, not '$host'") unless @list;
        for my $i (0 .. $#list) {
            my $one = $list[$i];
            _croak("$what; server " . ($i + 1) . ' is ' . (defined $one ? ref $one ? 'a reference' : "'$one'" : 'undef'))
                unless defined $one && !ref $one && length $one && $one !~ /\s/;
        }
        $arg{host} = \@list;
    }
    return \%arg;
}

has host => (is => 'ro', default => sub { ['localhost'] });

has port            => (is => 'ro', lazy => 1, default => sub { $_[0]->ssl ? 6209 : 209 });
has ssl             => (is => 'ro', default => sub { 0 });
has ssl_options     => (is => 'ro', default => sub { {} });
has timeout         => (is => 'ro', default => sub { 120 });
has connect_timeout => (is => 'ro');
has total_timeout   => (is => 'ro');
has local_address   => (is => 'ro');
has answers         => (is => 'ro', default => sub { 'auto' });
has debug           => (is => 'ro', default => sub { 0 });
has encoding        => (is => 'ro', default => sub { 'unix' });
has crlf_to_lf      => (is => 'ro', lazy => 1, default => sub { $_[0]->encoding eq 'unix' ? 1 : 0 });
has allow_partial_success => (is => 'ro', default => sub { 0 });

sub hosts { @{ $_[0]->host } }

# Everything that can be checked without the network is checked here, so
# that a bad argument dies where the transport is made, not at the first
# message: Net::QMTP's own checks run on a client made now.
sub BUILD {
    my ($self) = @_;
    my $enc = $self->encoding;
    _croak("encoding must be 'unix' or 'dos', not '" . (defined $enc ? $enc : 'undef') . "'")
        unless defined $enc && ($enc eq 'unix' || $enc eq 'dos');
    _croak("crlf_to_lf makes no sense with encoding 'dos', which sends CR LF line endings")
        if $enc eq 'dos' && $self->crlf_to_lf;
    my $tls = $self->ssl_options;
    _croak('ssl_options must be a hash of Net::QMTP\'s SSL_* options') unless ref $tls eq 'HASH';
    my @odd = grep { !/\ASSL_\w+\z/ } sort keys %$tls;
    _croak("ssl_options takes Net::QMTP's SSL_* options, not '$odd[0]'") if @odd;
    _croak('ssl_options need ssl => 1') if %$tls && !$self->ssl;
    $self->_client;
}

# The Net::QMTP client, made when first needed: anew in a thread (a client
# cannot be shared: a thread's copy is an unblessed husk) and in a forked child,
# where the parent's connection must not be written to. Dropping the
# parent's copy in the child closes only the child's descriptor.
sub _client {
    my ($self) = @_;
    my $q = $self->{_client};
    return $q if Scalar::Util::blessed($q) && $self->{_pid} == $$;
    $self->{_connected} = 0;
    my @opt = (
        Port         => $self->port,
        Timeout      => $self->timeout,
        Answers      => $self->answers,
        Debug        => $self->debug,
        DeferConnect => 1,
        (defined $self->connect_timeout ? (ConnectTimeout => $self->connect_timeout) : ()),
        (defined $self->total_timeout   ? (TotalTimeout   => $self->total_timeout)   : ()),
        (defined $self->local_address   ? (LocalAddr      => $self->local_address)   : ()),
        ($self->ssl ? (SSL => 1, %{ $self->ssl_options }) : ()),
    );
    $q = eval { Net::QMTP->new($self->host, @opt) };
    unless ($q) {
        # Net::QMTP's words, with this transport's names for its options.
        (my $why = $@) =~ s/ at \S+ line \d+\.?\n\z//;
        $why =~ s/\ANet::QMTP->new: //;
        $why =~ s/\A(\w+)/exists $OPTION_NAME{$1} ? $OPTION_NAME{$1} : $1/e;
        _croak($why);
    }
    $self->{_pid} = $$;
    return $self->{_client} = $q;
}

sub _persistent { 0 }

# The servers as an error names them: with the port each one is tried on.
sub _where {
    my ($self) = @_;
    return join ', ', map {
        my (undef, $port) = Net::QMTP::_split_server($_);
        defined $port || m{\A/} ? $_ : "$_ port " . $self->port;
    } $self->hosts;
}

sub send_email {
    my ($self, $email, $env) = @_;

    # Each address is read once (an object's overloading runs once) into a
    # string of our own, which is what is checked and sent.
    my @to = grep { length } map { defined $_ ? "$_" : () } @{ $env->{to} };
    Email::Sender::Failure->throw('no valid addresses in recipient list') unless @to;
    Email::Sender::Failure::Permanent->throw(
        "no sender: the envelope's from is undefined (the null sender is '')")
        unless defined $env->{from};
    my $from = "$env->{from}";
    # Addresses go out as bytes: a character above 255 is the caller's
    # mistake, said before anything is sent.
    for my $address ($from, @to) {
        utf8::downgrade($address, 1)
            or _croak("the address '$address' has characters above 255: encode it to bytes first");
    }

    # as_string makes a string of its own, which goes straight into the
    # job and is converted there, in place: no second copy of the message,
    # and the caller's email is not changed.
    my %job = (sender => $from, recipients => \@to, message => $email->as_string,
        encoding => $self->encoding);
    utf8::downgrade($job{message}, 1)
        or _croak('the message has characters above 255: '
            . 'encode it to bytes first (Email::MIME does, given charset and encoding)');
    Net::QMTP::_crlf_to_lf($job{message}) if $self->crlf_to_lf; # perl's s///g would copy

    # send_many connects if it must, within its own total_timeout.
    my $q = $self->_client;
    $q->_want_connection;
    $self->{_connected} = 1;
    my $results = $q->send_many(\%job);
    my $error = $q->error;
    $self->disconnect unless $self->_persistent;

    $results or $self->_not_sent(\@to, 'unable to establish a QMTP connection to ' . $self->_where
        . ": $error");
    my $result = $results->[0];
    $result->{result} or $self->_not_sent(\@to, 'QMTP to ' . $self->_where . ": $result->{error}");
    return $self->_outcome($result->{responses});
}

# Nothing was delivered: the message did not reach the server in full.
sub _not_sent {
    my ($self, $to, $why) = @_;
    Email::Sender::Failure::Temporary->throw({ message => $why, recipients => [@$to] });
}

# The mapping from the server's answers to Email::Sender's results. What
# decides it: a recipient the server accepted has the message, and QMTP
# cannot take that back, so no result may lead a caller to send it to
# that recipient again. A failure thrown names only recipients that do
# not have the message, even when one was listed twice and accepted once.
sub _outcome {
    my ($self, $responses) = @_;
    my %accepted = map { $_->{code} eq 'K' ? ($_->{recipient} => 1) : () } @$responses;
    my (@accepted, @refused, %seen);
    for my $r (@$responses) {
        if ($r->{code} eq 'K') {
            push @accepted, $r unless $seen{ $r->{recipient} }++;
        } elsif (!$accepted{ $r->{recipient} } && !$seen{ $r->{recipient} }++) {
            push @refused, $r;
        }
    }
    my $accepted_text = _texts(map { $_->{text} } @accepted);
    return $self->success({ message => $accepted_text }) unless @refused;

    # An answer Net::QMTP made up (none came, or none could be matched) is
    # no refusal by the server, and has no code of the server's.
    my @failures = map {
        my $r = $_;
        my $class = $r->{code} eq 'D' ? 'Email::Sender::Failure::Permanent' : 'Email::Sender::Failure::Temporary';
        $class->new({
            message    => "$r->{recipient}: $r->{response}",
            recipients => [ $r->{recipient} ],
            ($r->{received} ? (code => $r->{code}) : ()),
        });
    } @refused;

    if (!@accepted) {
        $failures[0]->throw if @failures == 1;
        my %kind = map { $_->{code} => 1 } @refused;
        if (keys %kind == 1) {
            # All refused the same way: one failure of that kind, for all.
            my ($code) = keys %kind;
            my $made_up = grep { !$_->{received} } @refused;
            ref($failures[0])->throw({
                message => ($code eq 'D' ? 'the QMTP server refused the message permanently'
                        : $made_up ? 'the message was not accepted for now'
                        : 'the QMTP server refused the message for now')
                    . ': ' . _texts(map { $made_up ? $_->{response} : $_->{text} } @refused),
                recipients => [ map { $_->{recipient} } @refused ],
                ($made_up ? () : (code => $code)),
            });
        }
        Email::Sender::Failure::Multi->throw({
            message  => 'the QMTP server refused the message, for some recipients permanently and for others for now',
            failures => \@failures,
        });
    }

    my $delivered = 'delivered to ' . join(', ', map { $_->{recipient} } @accepted);
    my $refused = 'not to ' . join(', ', map { $_->{recipient} } @refused);
    my $multi = {
        message  => "partly delivered: $delivered; $refused (the failure's recipients are the ones to retry)",
        failures => \@failures,
    };
    Email::Sender::Failure::Multi->throw($multi) unless $self->allow_partial_success;
    return $self->partial_success({
        message => $accepted_text,
        failure => Email::Sender::Failure::Multi->new($multi),
    });
}

# One text for several answers: a server that answers once per message
# gives every recipient the same one.
sub _texts {
    my %seen;
    my @texts = grep { !$seen{$_}++ } map { length $_ ? $_ : '(no text)' } @_;
    return @texts ? join('; ', @texts) : '(no text)';
}

sub success {
    my $self = shift;
    return Moo::Role->create_class_with_roles('Email::Sender::Success',
        'Email::Sender::Role::HasMessage')->new(@_);
}

sub partial_success {
    my $self = shift;
    return Moo::Role->create_class_with_roles('Email::Sender::Success::Partial',
        'Email::Sender::Role::HasMessage')->new(@_);
}

# Closes the connection, if there is one; the next send opens a new one.
sub disconnect {
    my ($self) = @_;
    my $q = $self->{_client};
    if (Scalar::Util::blessed($q) && $self->{_connected} && $self->{_pid} == $$) {
        $q->disconnect;
    }
    $self->{_connected} = 0;
    return;
}

with 'Email::Sender::Transport';
no Moo;
1;

__END__

=head1 NAME

Email::Sender::Transport::QMTP - send email over QMTP with Email::Sender

=head1 SYNOPSIS

 # With no change to the code: select the transport in the environment
 #   EMAIL_SENDER_TRANSPORT=QMTP EMAIL_SENDER_TRANSPORT_host=mx.example.org
 use Email::Sender::Simple qw(sendmail);
 sendmail($email);

 # Or in the code
 use Email::Sender::Transport::QMTP;
 my $transport = Email::Sender::Transport::QMTP->new(host => 'mx.example.org');
 sendmail($email, { transport => $transport });

 # Email::Stuffer
 Email::Stuffer->from('me@example.org')->to('you@example.org')
     ->subject('Hello')->text_body("Hi!\n")
     ->transport(QMTP => host => 'mx.example.org')->send_or_die;

=head1 DESCRIPTION

An L<Email::Sender> transport that hands each message to a QMTP server
(qmail's C<qmail-qmtpd>, mailfront, or any other) with L<Net::QMTP>. An
application that sends mail through L<Email::Sender::Simple> moves to
QMTP by setting two environment variables, or by naming this transport
where it names another.

Each C<send> opens a connection, sends the message and closes the
connection. L<Email::Sender::Transport::QMTP::Persistent> keeps one
connection across sends instead.

This module needs Email::Sender (Debian: libemail-sender-perl). Net::QMTP
itself does not: it loads Email::Sender only when this transport is
loaded.

=head1 ATTRIBUTES

Each can be given to C<new>, or to L<Email::Sender::Simple> in the
environment as C<EMAIL_SENDER_TRANSPORT_>I<name> (for example
C<EMAIL_SENDER_TRANSPORT_connect_timeout=5>). An argument that is not one
of these dies, naming it.

=over 4

=item host

The server: a host name, an IPv4 or IPv6 address, C<host:port>
(C<[address]:port> for IPv6), or the path of a Unix socket; or several,
tried in order until one accepts the connection, given as an array
reference or as one string with commas (C<'a.example, b.example:2209'>).
Default: C<localhost>. C<hosts> is accepted as another name for it, as
L<Email::Sender::Transport::SMTP> has.

=item port

The port for a host given without one. Default: 209.

=item timeout

Seconds any one wait for the server may last (C<Timeout> in Net::QMTP).
Default: 120.

=item connect_timeout

Seconds connecting may last, name lookup included (C<ConnectTimeout>).
Default: C<timeout>.

=item total_timeout

Seconds a whole C<send> may last, connecting included (C<TotalTimeout>).
Default: no limit beyond the others.

=item local_address

The local address to connect from (C<LocalAddr>).

=item answers

How the server answers: C<'auto'> (the default: found out on each
connection), C<'package'> (once per message, as mailfront does) or
C<'recipient'> (once per recipient, as qmail-qmtpd does). Declaring it
saves waiting for a message with several recipients; see
L<Net::QMTP/"SERVERS THAT ANSWER ONCE PER MESSAGE">.

=item ssl, ssl_options

C<ssl =E<gt> 1>: QMTPS, TLS from the first byte, on port 6209 unless
C<port> says otherwise, the server's certificate checked against the
system's CA store. C<ssl_options> is a hash of Net::QMTP's C<SSL_*>
options (C<SSL_ca_file>, C<SSL_hostname>, C<SSL_fingerprint>,
C<SSL_cert_file>, C<SSL_verify_mode>, ...; see L<Net::QMTP/new>). A
certificate not accepted is a temporary failure saying why.

=item debug

True prints the dialogue on standard error (C<Debug>).

=item encoding, crlf_to_lf

QMTP sends a message with a byte that says how its lines end: C<'unix'>
(LF) or C<'dos'> (CR LF). Email::MIME and Email::Simple make messages with
CR LF line endings, and mailfront refuses the dos encoding, so by default
(C<encoding> C<'unix'>, C<crlf_to_lf> true) each CR LF pair becomes LF
before sending; a CR or LF on its own is left as it is. The conversion is
made in place on the string C<as_string> returns, so it costs no second
copy of the message, and the email object given is not changed.

C<crlf_to_lf =E<gt> 0> sends the bytes exactly as they are, with the unix
encoding. C<encoding =E<gt> 'dos'> sends them exactly as they are with the
dos encoding, for servers that take it (qmail does); C<crlf_to_lf> cannot
be true then.

=item allow_partial_success

When some recipients accepted the message and others did not: false (the
default) throws a failure naming only the others; true returns an
L<Email::Sender::Success::Partial>. See L</RESULTS>.
L<Email::Sender::Simple> accepts only transports for which it is false.

=back

=head1 RESULTS

The server answers for each recipient: accepted, refused for now
(deferral) or refused for good (failure). Those answers become
Email::Sender's results like this:

=over 4

=item Every recipient accepted

C<send> returns an L<Email::Sender::Success>; its C<message> is the
server's text.

=item Every recipient refused in the same way

C<send> throws an L<Email::Sender::Failure::Permanent> (all refused for
good) or L<Email::Sender::Failure::Temporary> (all refused for now), whose
C<recipients> are all of them and whose C<message> holds the server's
text. C<code> is the QMTP answer code, C<D> or C<Z>.

=item Every recipient refused, some for good, some for now

C<send> throws an L<Email::Sender::Failure::Multi> with one failure for
each recipient, Permanent or Temporary.

=item Some recipients accepted, others not

The message I<was> delivered to the ones that accepted it, and QMTP has
no way to take that back. So nothing here may lead a caller to send it to
them again:

With C<allow_partial_success> false (the default), C<send> throws an
L<Email::Sender::Failure::Multi> whose failures, and so whose
C<recipients>, are only the recipients that did not accept. Its
C<message> begins C<partly delivered:> and names both groups. A caller
that retries should retry to C<< $failure->recipients >>, never to the
original list. With C<allow_partial_success> true, C<send> returns an
L<Email::Sender::Success::Partial> whose C<failure> is that same Multi.

A failure was chosen over a success for the default because a success
would hide the recipients that did not get the message, and
Email::Sender::Simple, which most applications use, accepts only
transports that never report partial success.

A recipient listed more than once counts as accepted when any of its
answers accepted it: it has the message.

=item Nothing could be sent

When no connection could be made, or the connection broke or timed out
before the whole message was written, the server did not get the message
(a QMTP server discards what it did not receive in full): C<send> throws
an L<Email::Sender::Failure::Temporary> for every recipient, saying why.

=item The answers did not come

When the message was written in full but the server's answers did not
come (it closed the connection or stalled past C<timeout>), the
recipients concerned get a Temporary failure with a text such as
C<deferral: no response received: connection closed by the server>. The
server may have taken the message: retrying may deliver it twice, which
mail prefers to losing it.

=back

No sender (C<from> undefined) throws an L<Email::Sender::Failure::Permanent>
(the null sender is C<''>), no recipient an L<Email::Sender::Failure>, as
Email::Sender's SMTP transport does. A message with characters above 255
(text not encoded to bytes) dies.

=head1 METHODS

=head2 send, send_email

As for every Email::Sender transport.

=head2 hosts

The list of servers.

=head2 disconnect

Closes the connection, if one is open. Useful mainly with the persistent
transport.

=head1 SEE ALSO

L<Net::QMTP>, L<Email::Sender::Transport::QMTP::Persistent>,
L<Email::Sender::Simple>, L<Email::Sender::Transport::SMTP>.

=head1 LICENSE

Same terms as Perl itself.

=cut

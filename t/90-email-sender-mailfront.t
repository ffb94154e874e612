#!perl
# Email::Sender::Transport::QMTP against the real mailfront: what an
# application hands to Email::Sender lands in mailfront's queue, byte for
# byte after the documented CR LF to LF conversion, however the transport
# was chosen (the environment, Email::Stuffer, an explicit envelope), and
# the persistent transport sends many messages.

use strict;
use warnings;

alarm 240;

use Test::More;

use lib 't/lib';
use Test::Mailfront;
use Test::EmailSender;

Test::Mailfront->require_or_skip;
Test::EmailSender->require_or_skip;

use Email::MIME;
use Email::Simple;
use Email::Sender::Simple;
use Email::Stuffer;
use Email::Sender::Transport::QMTP;
use Email::Sender::Transport::QMTP::Persistent;

my $mf = Test::Mailfront->start;
my $server = '127.0.0.1:' . $mf->port;

sub one_queued {
	my ($name) = @_;
	$mf->wait_queued(1, 10) or return fail("$name: queued"), undef;
	my @q = $mf->queued;
	$mf->clear;
	is(scalar @q, 1, "$name: one message queued") or return undef;
	return $q[0];
}

sub lf { (my $s = $_[0]) =~ s/\015\012/\012/g; $s }

my $mime = Email::MIME->create(
	header_str => [From => 'app@example.org', To => 'a@example.org, b@example.org', Subject => 'QMTP'],
	attributes => { content_type => 'text/plain', charset => 'UTF-8', encoding => 'quoted-printable' },
	body_str   => "Gr\x{fc}\x{df}e.\nA second line.\n",
);
my $as_string = $mime->as_string;
like($as_string, qr/\015\012/, 'Email::MIME makes CR LF line endings');

{
	# Two environment variables, no change to the code.
	Test::EmailSender::simple_from_env(EMAIL_SENDER_TRANSPORT => 'QMTP',
		EMAIL_SENDER_TRANSPORT_host => $server);
	my $ok = Email::Sender::Simple->send($mime);
	isa_ok($ok, 'Email::Sender::Success', 'Email::Sender::Simple via the environment');
	isa_ok(Email::Sender::Simple->default_transport, 'Email::Sender::Transport::QMTP', 'the transport');
	like($ok->message, qr/accepted/i, "the success carries the server's text");
	my $q = one_queued('environment');
	is($q->{sender}, 'app@example.org', 'environment: sender from the header');
	is_deeply($q->{recipients}, ['a@example.org', 'b@example.org'], 'environment: recipients from To');
	is($q->{message}, lf($as_string), 'environment: the stored message is the email with LF line endings');
	unlike($q->{message}, qr/\015/, 'environment: no CR left');
	is($mime->as_string, $as_string, 'the email object is not changed by the send');
	Test::EmailSender::simple_from_env();
}

{
	# Arguments in the environment are strings; several of them.
	Test::EmailSender::simple_from_env(EMAIL_SENDER_TRANSPORT => 'QMTP',
		EMAIL_SENDER_TRANSPORT_host => "127.0.0.1:1, $server",
		EMAIL_SENDER_TRANSPORT_answers => 'package',
		EMAIL_SENDER_TRANSPORT_timeout => '30');
	my $ok = Email::Sender::Simple->send($mime, { to => ['c@example.org'], from => '' });
	isa_ok($ok, 'Email::Sender::Success', 'a list of servers: the second accepted');
	my $q = one_queued('list');
	is($q->{sender}, '', 'the null sender given in the envelope');
	is_deeply($q->{recipients}, ['c@example.org'], 'the envelope given wins over the headers');
	Test::EmailSender::simple_from_env();
}

{
	my $ok = Email::Stuffer->from('stuffer@example.org')->to('d@example.org')
		->subject('Stuffed')->text_body("Line one\nLine two\n")
		->transport('QMTP', host => '127.0.0.1', port => $mf->port)->send;
	ok($ok, 'Email::Stuffer ->transport(QMTP => ...)->send');
	isa_ok($ok, 'Email::Sender::Success');
	my $q = one_queued('Email::Stuffer');
	is($q->{sender}, 'stuffer@example.org', 'Email::Stuffer: sender');
	is_deeply($q->{recipients}, ['d@example.org'], 'Email::Stuffer: recipient');
	like($q->{message}, qr/\nSubject: Stuffed\n/, 'Email::Stuffer: headers with LF');
	like($q->{message}, qr/Line one\nLine two\n/, 'Email::Stuffer: body with LF');
	unlike($q->{message}, qr/\015/, 'Email::Stuffer: no CR left');
}

{
	# A bare transport and an explicit envelope; bare CR and LF stay.
	my $t = Email::Sender::Transport::QMTP->new(host => '127.0.0.1', port => $mf->port);
	my $raw = "From: x\@example.org\015\012Subject: raw\015\012\015\012a\015b\012c\015\012\015\012";
	my $email = Email::Simple->new($raw);
	my $ok = $t->send($email, { from => 'bounce@example.org', to => ['e@example.org', 'f@example.org'] });
	isa_ok($ok, 'Email::Sender::Success', 'send with an explicit envelope');
	my $q = one_queued('explicit envelope');
	is($q->{sender}, 'bounce@example.org', 'explicit envelope: sender');
	is_deeply($q->{recipients}, ['e@example.org', 'f@example.org'], 'explicit envelope: recipients');
	is($q->{message}, "From: x\@example.org\012Subject: raw\012\012a\015b\012c\012\012",
		'only CR LF pairs become LF');
	is($email->as_string, $raw, 'the email object is not changed');

	my $asis = Email::Sender::Transport::QMTP->new(host => $server, crlf_to_lf => 0);
	isa_ok($asis->send($email, { from => 'x@example.org', to => ['g@example.org'] }),
		'Email::Sender::Success', 'crlf_to_lf => 0');
	$q = one_queued('crlf_to_lf => 0');
	is($q->{message}, $raw, 'crlf_to_lf => 0: the bytes exactly as they were');

	# mailfront refuses the dos encoding: a real Temporary failure.
	my $dos = Email::Sender::Transport::QMTP->new(host => $server, encoding => 'dos');
	my $err;
	eval { $dos->send($email, { from => 'x@example.org', to => ['h@example.org'] }); 1 } or $err = $@;
	isa_ok($err, 'Email::Sender::Failure::Temporary', "mailfront's deferral of the dos encoding");
	is_deeply([ $err ? $err->recipients : () ], ['h@example.org'], 'the failure names the recipient');
	ok(!$mf->wait_queued(1, 0.2), 'nothing queued');
}

{
	# Many messages over one connection, as an application sends them.
	my $t = Email::Sender::Transport::QMTP::Persistent->new(host => $server, answers => 'package');
	my $n = 50;
	my $ok = 0;
	for my $i (1 .. $n) {
		my $email = Email::Simple->create(header => [From => 'p@example.org', To => "r$i\@example.org",
			Subject => "number $i"], body => "message $i\015\012");
		$ok++ if eval { Email::Sender::Simple->send($email, { transport => $t })->isa('Email::Sender::Success') };
	}
	is($ok, $n, "persistent: $n successes");
	ok($mf->wait_queued($n, 20), "persistent: $n queued");
	my @q = $mf->queued;
	$mf->clear;
	is_deeply([ sort map { $_->{recipients}[0] } @q ], [ sort map { "r$_\@example.org" } 1 .. $n ],
		'persistent: every recipient once');
	is(scalar(grep { $_->{message} =~ /\nSubject: number (\d+)\n(?:.*\n)?\nmessage \1\n\z/ && $_->{message} !~ /\015/ } @q), $n,
		'persistent: every message stored with LF');
	$t->disconnect;
}

done_testing;

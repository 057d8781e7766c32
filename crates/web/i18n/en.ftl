# Sportello: English messages.

## Why a value is not accepted. { $field } is the field's label.
required = { $field }: this field is required.
unknown-field = { $field }: this field is not part of the chosen service.
too-long = { $field }: the text is too long (at most { $max } characters).
person-tax-code-format = { $field }: a tax code has 16 characters, for example RSSMRA45C12F205C.
person-tax-code-birth-date = { $field }: the date of birth inside the tax code does not exist.
person-tax-code-check-character = { $field }: the tax code is not valid, its last (check) character does not match. Please check it.
person-tax-code-birth-mismatch = { $field }: the tax code does not match the date of birth given.
vat-number-format = { $field }: a VAT number has 11 digits.
vat-number-office = { $field }: the VAT number is not valid, digits 8 to 10 name no existing office.
vat-number-check-digit = { $field }: the VAT number is not valid, its last (check) digit does not match.
business-tax-code-format = { $field }: give 16 characters for a sole trader or 11 digits for a company.
company-tax-code-check-digit = { $field }: the company tax code is not valid, its last (check) digit does not match.
cap-format = { $field }: a postcode (CAP) has 5 digits.
province-unknown = { $field }: give the code of an Italian province, for example RM.
ateco-format = { $field }: an ATECO code has 6 digits as NN.NN.NN, for example 56.30.00.
email-format = { $field }: the address is not valid, for example business@pec.it.
date-format = { $field }: give a real date as dd/mm/yyyy.
date-in-future = { $field }: the date cannot be in the future.
date-too-early = { $field }: the date cannot be before { $min }.
date-too-late = { $field }: the date cannot be after { $max }.
integer-format = { $field }: give a whole number, for example 3.
amount-format = { $field }: give an amount in euro, for example 1234.56.
number-too-small = { $field }: the value cannot be less than { $min }.
number-too-large = { $field }: the value cannot be more than { $max }.
not-an-option = { $field }: choose one of the allowed values ({ $options }).
not-at-fault = { $field }: the institution did not name this field among those to correct.
control-characters = { $field }: the text contains characters that are not allowed.

## Titles and details of API error answers.
problem-validation = The data is not valid
problem-validation-detail = Correct the fields listed; nothing was saved or sent.
problem-not-found = Not found
problem-not-found-detail = The resource does not exist or is not accessible with this card.
problem-wrong-state = Not allowed in this state
problem-wrong-state-detail = The practice is «{ $state }»: this operation is not possible.
problem-unauthenticated = Smart-card authentication required
problem-unauthenticated-detail = Log in presenting a valid Carta Nazionale dei Servizi.
problem-forged-proxy-header = Header reserved to the proxy
problem-forged-proxy-header-detail = The request carries the certificate header that only the trusted proxy may send.
problem-cross-site = Request from another site
problem-cross-site-detail = For safety, operations that change data are accepted only from this portal's own pages.
problem-session-expired = Session expired
problem-session-expired-detail = The session has expired or is not valid: log in again with your smart card.
problem-csrf-token = Security token missing
problem-csrf-token-detail = The request lacks the session's security token: reload the page and try again.
problem-bad-signature = Invalid ModI signature
problem-card-refused = Smart card not accepted
problem-not-authorised = Authorisation missing
problem-not-authorised-detail = Nothing was sent: you are not authorised to operate online for the business { $business } at: { $institutions }. Each institution says how to obtain the authorisation; if it could not answer, try again in a few minutes.
problem-wrong-delivery-state = Sending not allowed in this state
problem-wrong-delivery-state-detail = The delivery to this institution is «{ $state }»: only a failed delivery, or a rejected filing once corrected, can be sent again.
problem-malformed-json = Unreadable request
problem-malformed-json-detail = The request body is not valid JSON: { $error }
problem-wrong-shape = Request does not match
problem-wrong-shape-detail = The request body does not have the expected shape: { $error }
problem-unsupported-media-type = Unsupported content type
problem-unsupported-media-type-detail = Send the body as application/json.
problem-too-large = Request too large
problem-too-large-detail = The request body is over the limit of { $limit } bytes.
problem-bad-parameter = Invalid parameter
problem-method-not-allowed = Method not allowed
problem-method-not-allowed-detail = This address does not accept the HTTP method used.
problem-unknown-service = No such service
problem-unknown-service-detail = The service «{ $service }» is not in the catalog.
problem-unavailable = Temporarily unavailable
problem-unavailable-detail = Please try again shortly; data already saved is not lost.
problem-internal = Internal error
problem-internal-detail = Something unexpected went wrong; it has been logged.

## Practice states.
state-draft = draft
state-in_progress = in progress
state-completed = completed
state-archived = archived

## Why a smart card is not accepted.
card-not-verified = The certificate forwarded by the proxy did not verify (issuer, validity or revocation).
card-unparsable = The certificate presented cannot be read.
card-not-yet-valid = The card's certificate is not valid yet.
card-expired = The card's certificate has expired.
card-no-client-auth = The certificate presented is not meant for authentication.
card-no-accepted-policy = The certificate presented is not from a Carta Nazionale dei Servizi or another accepted card.
card-no-tax-code = The certificate carries no tax code.
card-invalid-tax-code = The tax code in the certificate is not valid.

## States of the delivery to one institution.
delivery-state-queued = waiting to be sent
delivery-state-delivered = delivered
delivery-state-taken_in_charge = taken in charge
delivery-state-accepted = accepted
delivery-state-rejected = rejected
delivery-state-failed = not delivered

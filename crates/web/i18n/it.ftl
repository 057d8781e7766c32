# Sportello: messaggi in italiano.

## Motivi per cui un valore non è accettato. { $field } è l'etichetta del campo.
required = { $field }: campo obbligatorio.
unknown-field = { $field }: questo campo non fa parte del servizio scelto.
too-long = { $field }: il testo è troppo lungo (al massimo { $max } caratteri).
person-tax-code-format = { $field }: il codice fiscale deve avere 16 caratteri, ad esempio RSSMRA45C12F205C.
person-tax-code-birth-date = { $field }: la data di nascita contenuta nel codice fiscale non esiste.
person-tax-code-check-character = { $field }: il codice fiscale non è valido, l'ultimo carattere (di controllo) non corrisponde. Controlli di averlo scritto bene.
person-tax-code-birth-mismatch = { $field }: il codice fiscale non corrisponde alla data di nascita indicata.
vat-number-format = { $field }: la partita IVA deve avere 11 cifre.
vat-number-office = { $field }: la partita IVA non è valida, le cifre dalla 8ª alla 10ª non indicano un ufficio esistente.
vat-number-check-digit = { $field }: la partita IVA non è valida, l'ultima cifra (di controllo) non corrisponde.
business-tax-code-format = { $field }: indicare 16 caratteri per una ditta individuale o 11 cifre per una società.
company-tax-code-check-digit = { $field }: il codice fiscale della società non è valido, l'ultima cifra (di controllo) non corrisponde.
cap-format = { $field }: il CAP deve avere 5 cifre.
province-unknown = { $field }: indicare la sigla di una provincia italiana, ad esempio RM.
ateco-format = { $field }: il codice ATECO deve avere 6 cifre nel formato NN.NN.NN, ad esempio 56.30.00.
email-format = { $field }: l'indirizzo non è valido, ad esempio impresa@pec.it.
date-format = { $field }: indicare una data esistente nel formato gg/mm/aaaa.
date-in-future = { $field }: la data non può essere nel futuro.
date-too-early = { $field }: la data non può essere precedente al { $min }.
date-too-late = { $field }: la data non può essere successiva al { $max }.
integer-format = { $field }: indicare un numero intero, ad esempio 3.
amount-format = { $field }: indicare un importo in euro, ad esempio 1234,56.
number-too-small = { $field }: il valore non può essere inferiore a { $min }.
number-too-large = { $field }: il valore non può essere superiore a { $max }.
not-an-option = { $field }: scegliere uno dei valori ammessi ({ $options }).
not-at-fault = { $field }: questo campo non è tra quelli indicati dall'ente come da correggere.
control-characters = { $field }: il testo contiene caratteri non ammessi.

## Titoli e dettagli delle risposte di errore dell'API.
problem-validation = I dati non sono validi
problem-validation-detail = Correggere i campi indicati; nulla è stato salvato o inviato.
problem-not-found = Non trovato
problem-not-found-detail = La risorsa richiesta non esiste o non è accessibile con questa carta.
problem-wrong-state = Operazione non consentita in questo stato
problem-wrong-state-detail = La pratica è nello stato «{ $state }»: questa operazione non è possibile.
problem-unauthenticated = Autenticazione con smart card necessaria
problem-unauthenticated-detail = Accedere presentando una Carta Nazionale dei Servizi valida.
problem-forged-proxy-header = Intestazione riservata al proxy
problem-forged-proxy-header-detail = La richiesta contiene l'intestazione del certificato che solo il proxy di fiducia può inviare.
problem-cross-site = Richiesta da un altro sito
problem-cross-site-detail = Per sicurezza le operazioni che modificano i dati sono accettate solo dalle pagine di questo portale.
problem-session-expired = Sessione scaduta
problem-session-expired-detail = La sessione è scaduta o non è valida: acceda di nuovo con la smart card.
problem-csrf-token = Token di sicurezza mancante
problem-csrf-token-detail = La richiesta non contiene il token di sicurezza della sessione: ricarichi la pagina e riprovi.
problem-bad-signature = Firma ModI non valida
problem-card-refused = Smart card non accettata
problem-not-authorised = Abilitazione mancante
problem-not-authorised-detail = Nulla è stato inviato: non risulta abilitato a operare online per l'impresa { $business } presso: { $institutions }. Per ciascun ente è indicato come ottenere l'abilitazione; se l'ente non ha potuto rispondere, riprovare tra qualche minuto.
problem-wrong-delivery-state = Invio non consentito in questo stato
problem-wrong-delivery-state-detail = La consegna a questo ente è «{ $state }»: si può inviare di nuovo solo una consegna non riuscita o una pratica respinta e corretta.
problem-malformed-json = Richiesta non leggibile
problem-malformed-json-detail = Il corpo della richiesta non è JSON valido: { $error }
problem-wrong-shape = Richiesta non conforme
problem-wrong-shape-detail = Il corpo della richiesta non ha la forma attesa: { $error }
problem-unsupported-media-type = Tipo di contenuto non supportato
problem-unsupported-media-type-detail = Inviare il corpo come application/json.
problem-too-large = Richiesta troppo grande
problem-too-large-detail = Il corpo della richiesta supera il limite di { $limit } byte.
problem-bad-parameter = Parametro non valido
problem-method-not-allowed = Metodo non consentito
problem-method-not-allowed-detail = Questo indirizzo non accetta il metodo HTTP usato.
problem-unknown-service = Servizio inesistente
problem-unknown-service-detail = Il servizio «{ $service }» non è nel catalogo.
problem-unavailable = Servizio momentaneamente non disponibile
problem-unavailable-detail = Riprovare tra qualche istante; i dati già salvati non sono andati persi.
problem-internal = Errore interno
problem-internal-detail = Si è verificato un errore imprevisto; è stato registrato.

## Stati della pratica.
state-draft = in bozza
state-in_progress = in corso
state-completed = completata
state-archived = archiviata

## Perché una smart card non è accettata.
card-not-verified = Il certificato inoltrato dal proxy non è stato riconosciuto valido (certificatore, scadenza o revoca).
card-unparsable = Il certificato presentato non è leggibile.
card-not-yet-valid = Il certificato della carta non è ancora valido.
card-expired = Il certificato della carta è scaduto.
card-no-client-auth = Il certificato presentato non è destinato all'autenticazione.
card-no-accepted-policy = Il certificato presentato non è di una Carta Nazionale dei Servizi o di una carta accettata.
card-no-tax-code = Il certificato non contiene un codice fiscale.
card-invalid-tax-code = Il codice fiscale contenuto nel certificato non è valido.

## Stati della consegna a un ente.
delivery-state-queued = in attesa di invio
delivery-state-delivered = consegnata
delivery-state-taken_in_charge = presa in carico
delivery-state-accepted = accolta
delivery-state-rejected = respinta
delivery-state-failed = non consegnata

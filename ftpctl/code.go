package ftpctl

// Code is a three-digit FTP reply code (RFC 959 section 4.2).
type Code int

// Class is the first digit of a reply code; it, not the text, drives behaviour.
type Class int

// Reply classes, RFC 959 section 4.2.1.
const (
	ClassPreliminary  Class = 1 // 1yz: more replies follow for this command
	ClassCompletion   Class = 2 // 2yz: done
	ClassIntermediate Class = 3 // 3yz: send the next command of the sequence
	ClassTransient    Class = 4 // 4yz: failed, may be retried
	ClassPermanent    Class = 5 // 5yz: failed
)

// Class reports the reply's class: the first digit of c.
func (c Code) Class() Class { return Class(c / 100) }

// Final reports whether a reply with code c ends its command; only 1yz replies
// announce that more is to come.
func (c Code) Final() bool { return c.Class() != ClassPreliminary }

// Valid reports whether c has three digits and a class RFC 959 defines.
func (c Code) Valid() bool { return c >= 100 && c <= 599 }

// Reply codes ftpsgate sends or acts upon (RFC 959, 2228, 2428, 4217).
const (
	CodeReadySoon          Code = 120 // service ready in nnn minutes, 220 follows
	CodeFileStatusOK       Code = 150 // about to open data connection
	CodeOK                 Code = 200
	CodeNotNeeded          Code = 202 // command superfluous at this site
	CodeSystemStatus       Code = 211 // FEAT, STAT
	CodeFileStatus         Code = 213
	CodeReady              Code = 220
	CodeClosing            Code = 221
	CodeTransferComplete   Code = 226
	CodeEnteringPassive    Code = 227
	CodeEnteringExtPassive Code = 229 // RFC 2428
	CodeLoggedIn           Code = 230
	CodeAuthOK             Code = 234 // RFC 2228: security data exchange complete
	CodeFileActionOK       Code = 250
	CodeNeedPassword       Code = 331
	CodeNeedAccount        Code = 332
	CodePending            Code = 350
	CodeNotAvailable       Code = 421
	CodeCannotOpenData     Code = 425
	CodeTransferAborted    Code = 426
	CodeLocalError         Code = 451
	CodeSyntaxError        Code = 500
	CodeArgSyntaxError     Code = 501
	CodeNotImplemented     Code = 502
	CodeBadSequence        Code = 503
	CodeParamNotImpl       Code = 504
	CodeNetProtoNotSupp    Code = 522 // RFC 2428: use another address family
	CodeNotLoggedIn        Code = 530
	CodeProtectionDenied   Code = 533 // RFC 2228: command protection level denied for policy reasons
	CodePolicyDenied       Code = 534 // RFC 2228: request denied for policy reasons
	CodeProtNotSupported   Code = 536 // RFC 2228: PROT level not supported
	CodeFileUnavailable    Code = 550
)

package main

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// escapeText returns s as it may be shown to an operator: on the status
// page, by `ftpsgate tail`, in the xferlog file, in a log record's field
// about a request. Client-chosen values (user names, paths, SNI, a Host
// header) go through it, so that none can move the cursor, recolour,
// clear or retitle a terminal, reorder the text around it, or pass for
// something it is not. Written as Go escapes:
//
//   - C0 and C1 controls and DEL: \x1b, \a, \t, \n, \r, \x00, \x7f, \u009b;
//   - Unicode format characters (category Cf): the bidi controls, which
//     make "evil\u202etxt.exe" show as "evilexe.txt", and the zero-width
//     ones (\u200b, \u200d); line and paragraph separators (\u2028,
//     \u2029); unassigned and private-use code points;
//   - spaces other than U+0020 (\u00a0, \u3000), and the letters and
//     symbols that show as blanks (the Hangul fillers such as \u3164, the
//     blank braille pattern \u2800);
//   - U+0020 unless it is a single space between two other characters: a
//     leading, trailing or repeated space is \x20. A name padded with
//     spaces so that the terminal wraps and its end seems to start a line
//     (a record of its own) shows as one visible run of escapes, while
//     "Jane Doe" and "/pub/file name.bin" stay as they are;
//   - a byte that is not UTF-8: \xNN, always 80 or more, so never the
//     escape of a character;
//   - the backslash itself: \\, so that an escape in the output always
//     stands for the character it names, never for a client's backslash
//     followed by "x1b".
//
// Everything else, letters of every script included, is left as it is.
// The output still needs the escaping of where it goes (html/template on
// the page, JSON in a record).
//
// The xferlog file is split into its fields on blanks by the tools that
// read it, so there the single spaces this lets through are written _, as
// wu-ftpd writes a blank in a file name (see xferlogLine); the other
// spaces are already \x20.
func escapeText(s string) string {
	i := 0
	for i < len(s) && !needsEscape(s, i) {
		_, n := utf8.DecodeRuneInString(s[i:])
		i += n
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	b.WriteString(s[:i])
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case !needsEscape(s, i):
			b.WriteString(s[i : i+n])
		case r == utf8.RuneError && n == 1:
			b.WriteString(`\x`)
			b.WriteString(hex2(s[i]))
		default:
			b.WriteString(escapeRune(r))
		}
		i += n
	}
	return b.String()
}

// needsEscape reports whether the character at s[i] is written escaped.
func needsEscape(s string, i int) bool {
	r, n := utf8.DecodeRuneInString(s[i:])
	switch {
	case r == utf8.RuneError && n == 1:
		return true
	case r == '\\':
		return true
	case r == ' ':
		// A continuation byte is never ' ', so s[i-1] and s[i+1] are
		// whole characters' bytes or parts of other characters: either way
		// not spaces.
		return i == 0 || i == len(s)-1 || s[i-1] == ' ' || s[i+1] == ' '
	}
	return !unicode.IsGraphic(r) || unicode.Is(unicode.Zs, r) || blank(r)
}

// blank reports whether r is a graphic character that shows as nothing
// or as a space: the ones Unicode calls default-ignorable without being
// format characters (Hangul fillers among them), and the blank braille
// pattern, each a favourite for padding a name.
func blank(r rune) bool {
	return r == '\u2800' || unicode.Is(unicode.Other_Default_Ignorable_Code_Point, r)
}

// escapeRune writes r as Go writes it in a quoted string: \t, \x1b,
// \u202e, \U000e0001.
func escapeRune(r rune) string {
	switch r {
	case '\a':
		return `\a`
	case '\b':
		return `\b`
	case '\f':
		return `\f`
	case '\n':
		return `\n`
	case '\r':
		return `\r`
	case '\t':
		return `\t`
	case '\v':
		return `\v`
	case '\\':
		return `\\`
	}
	switch {
	case r < utf8.RuneSelf:
		return `\x` + hex2(byte(r))
	case r <= 0xffff:
		return `\u` + hex2(byte(r>>8)) + hex2(byte(r))
	}
	return `\U` + hex2(byte(r>>24)) + hex2(byte(r>>16)) + hex2(byte(r>>8)) + hex2(byte(r))
}

func hex2(b byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[b>>4], digits[b&0xf]})
}

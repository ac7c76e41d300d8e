package ftpctl

import "strings"

// ParseFeat returns the features of a 211 FEAT reply (RFC 2389 section 3.2),
// one string each ("UTF8", "MLST type*;size*;"), without the indentation.
// A reply that is not 211 has no features.
func ParseFeat(r Reply) []string {
	if r.Code != CodeSystemStatus || len(r.Lines) < 3 {
		return nil
	}
	var feats []string
	for _, l := range r.Lines[1 : len(r.Lines)-1] {
		if f := strings.TrimSpace(l); f != "" {
			feats = append(feats, f)
		}
	}
	return feats
}

// FeatReply builds the 211 reply listing feats, each on its own line
// indented by one space as RFC 2389 requires.
func FeatReply(feats []string) Reply {
	lines := make([]string, 0, len(feats)+2)
	lines = append(lines, "Features:")
	for _, f := range feats {
		lines = append(lines, " "+f)
	}
	lines = append(lines, "End")
	return Reply{Code: CodeSystemStatus, Lines: lines}
}

// FeatureName returns the name of a feature line: its first word, upper case.
func FeatureName(feat string) string {
	name, _, _ := strings.Cut(strings.TrimSpace(feat), " ")
	return strings.ToUpper(name)
}

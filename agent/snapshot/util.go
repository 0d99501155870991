package snapshot

import "strings"

func trim(s string) string { return strings.TrimSpace(s) }

// containsSel reports whether the bracketed selection of a sysfs choice list
// ("none [integrity] confidentiality") is word.
func containsSel(s, word string) bool { return strings.Contains(s, "["+word+"]") }

func containsWord(s, word string) bool {
	for _, f := range strings.Fields(s) {
		if f == word {
			return true
		}
	}
	return false
}

package supervisor

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// placeholderPattern matches what reads as a placeholder: an identifier in
// braces. Other braces (JSON in an argument, say) are left alone.
var placeholderPattern = regexp.MustCompile(`\{[A-Za-z_][A-Za-z0-9_]*\}`)

// placeholders are the values substituted in an instance's Args and Env.
type placeholders struct {
	Port     int
	HostName string
	Instance int
}

// expand replaces {Port}, {HostName} and {Instance} in s.
func (p placeholders) expand(s string) string {
	return placeholderPattern.ReplaceAllStringFunc(s, func(token string) string {
		switch token {
		case "{Port}":
			return strconv.Itoa(p.Port)
		case "{HostName}":
			return p.HostName
		case "{Instance}":
			return strconv.Itoa(p.Instance)
		}
		return token
	})
}

// checkPlaceholders returns an error naming the first placeholder in s that
// is not {Port}, {HostName} or {Instance}.
func checkPlaceholders(s string) error {
	for _, token := range placeholderPattern.FindAllString(s, -1) {
		switch token {
		case "{Port}", "{HostName}", "{Instance}":
			continue
		}
		return fmt.Errorf("unknown placeholder %s in %q (want {Port}, {HostName} or {Instance}%s)", token, s, suggestion(token))
	}
	return nil
}

// suggestion names the placeholder token was probably meant to be.
func suggestion(token string) string {
	for _, known := range []string{"{Port}", "{HostName}", "{Instance}"} {
		if strings.EqualFold(token, known) {
			return "; did you mean " + known + "?"
		}
	}
	return ""
}

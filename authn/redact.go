package authn

import "net/url"

// RedactURL returns s fit for logs and printed settings: user
// information and query values (tokens, API keys) replaced; a string that
// does not parse as a URL is replaced whole.
func RedactURL(s string) string {
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil {
		return "<redacted>"
	}
	if u.User != nil {
		u.User = url.User("redacted")
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			q[k] = []string{"redacted"}
		}
		u.RawQuery = q.Encode()
	}
	return u.String()
}

package resources

// A small writer of HCL 1, the dialect OpenBao's configuration parser reads: the server
// configuration and the self-initialization stanzas are rendered with it.

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// hclWriter writes HCL as OpenBao's parser (HCL 1) reads it.
type hclWriter struct {
	sb     strings.Builder
	indent int
	err    error
}

func (w *hclWriter) String() string { return w.sb.String() }

func (w *hclWriter) line(format string, args ...any) {
	w.sb.WriteString(strings.Repeat("  ", w.indent))
	fmt.Fprintf(&w.sb, format, args...)
	w.sb.WriteByte('\n')
}

func (w *hclWriter) blank() { w.sb.WriteByte('\n') }

func (w *hclWriter) open(kind string, labels ...string) {
	head := kind
	for _, l := range labels {
		head += " " + hclString(l)
	}
	w.line("%s {", head)
	w.indent++
}

func (w *hclWriter) close() {
	w.indent--
	w.line("}")
}

func (w *hclWriter) attr(key string, v any) {
	s, err := hclValue(v, w.indent)
	if err != nil && w.err == nil {
		w.err = fmt.Errorf("%s: %w", key, err)
	}
	w.line("%s = %s", hclKey(key), s)
}

func (w *hclWriter) request(name, operation, path string, data map[string]any, allowFailure bool) {
	w.open("request", name)
	w.attr("operation", operation)
	w.attr("path", path)
	if allowFailure {
		w.attr("allow_failure", true)
	}
	if data != nil {
		w.attr("data", data)
	}
	w.close()
}

var bareKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

func hclKey(k string) string {
	if bareKey.MatchString(k) {
		return k
	}
	return hclString(k)
}

// hclValue encodes v at the given indentation depth.
func hclValue(v any, depth int) (string, error) {
	return hclValueIn(v, depth, false)
}

// hclValueIn encodes v; inList is true for list items, which cannot be heredocs (the
// separating comma would have to follow the terminator on its line).
func hclValueIn(v any, depth int, inList bool) (string, error) {
	pad := strings.Repeat("  ", depth+1)
	end := strings.Repeat("  ", depth)
	switch x := v.(type) {
	case nil:
		return "", errors.New("null values cannot be written in an OpenBao configuration")
	case string:
		if !inList && heredocOK(x) {
			return "<<EOT\n" + x + "EOT", nil
		}
		return hclString(x), nil
	case bool:
		return strconv.FormatBool(x), nil
	case int:
		return strconv.Itoa(x), nil
	case int32:
		return strconv.FormatInt(int64(x), 10), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return "", fmt.Errorf("number %v cannot be written", x)
		}
		if x == math.Trunc(x) && math.Abs(x) < 1e15 {
			return strconv.FormatInt(int64(x), 10), nil
		}
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case []string:
		items := make([]any, len(x))
		for i, s := range x {
			items[i] = s
		}
		return hclValue(items, depth)
	case []any:
		if len(x) == 0 {
			return "[]", nil
		}
		if inline, ok := inlineList(x); ok {
			return inline, nil
		}
		var b strings.Builder
		b.WriteString("[\n")
		for i, item := range x {
			s, err := hclValueIn(item, depth+1, true)
			if err != nil {
				return "", fmt.Errorf("[%d]: %w", i, err)
			}
			b.WriteString(pad + s + ",\n")
		}
		b.WriteString(end + "]")
		return b.String(), nil
	case map[string]any:
		if len(x) == 0 {
			return "{}", nil
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		b.WriteString("{\n")
		for _, k := range keys {
			s, err := hclValue(x[k], depth+1)
			if err != nil {
				return "", fmt.Errorf("%s: %w", k, err)
			}
			b.WriteString(pad + hclKey(k) + " = " + s + "\n")
		}
		b.WriteString(end + "}")
		return b.String(), nil
	default:
		return "", fmt.Errorf("values of type %T cannot be written in an OpenBao configuration", v)
	}
}

// inlineList writes a short list of one-line scalars on one line.
func inlineList(items []any) (string, bool) {
	parts := make([]string, 0, len(items))
	for _, item := range items {
		switch v := item.(type) {
		case string:
			if strings.ContainsAny(v, "\n") {
				return "", false
			}
		case bool, int, int32, int64:
		default:
			return "", false
		}
		s, err := hclValueIn(item, 0, true)
		if err != nil {
			return "", false
		}
		parts = append(parts, s)
	}
	out := "[" + strings.Join(parts, ", ") + "]"
	return out, len(out) <= 80
}

// heredocOK says whether s reads better, and parses back the same, as a heredoc: several
// lines ending in a newline, none of them the terminator, nothing HCL would interpolate.
func heredocOK(s string) bool {
	if !strings.HasSuffix(s, "\n") || strings.Count(s, "\n") < 2 {
		return false
	}
	if strings.Contains(s, "${") || strings.Contains(s, "%{") || strings.ContainsAny(s, "\r\x00") {
		return false
	}
	for _, l := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		if strings.TrimSpace(l) == "EOT" {
			return false
		}
	}
	return true
}

// hclString quotes s for HCL 1. HCL 1 treats "${" inside a quoted string as the start of an
// interpolation and scans for its closing brace, so '$' is written as \u0024 before '{'.
func hclString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case (r == '$' || r == '%') && i+1 < len(s) && s[i+1] == '{':
			fmt.Fprintf(&b, `\u%04x`, r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

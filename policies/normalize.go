package policies

// Escaped-slash policies of NormalizePath.
const (
	EscapedSlashesReject = "reject"
	EscapedSlashesDecode = "decode"
)

// NormalizePath returns the normal form of a request path.
func NormalizePath(path, escapedSlashes string, mergeSlashes bool) (string, error) {
	return path, nil
}

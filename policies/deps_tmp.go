package policies

// Temporary: keeps the step libraries in go.mod while the steps are written.
import (
	_ "github.com/google/cel-go/cel"
	_ "github.com/hashicorp/golang-lru/v2"
	_ "github.com/lestrrat-go/jwx/v3/jwt"
	_ "github.com/redis/go-redis/v9"
	_ "github.com/rs/cors"
	_ "golang.org/x/time/rate"
)

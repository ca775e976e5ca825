package balancer

import (
	"slices"
	"testing"
)

func TestRoundRobinOrder(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		n    int
		skip []int
		want []int
	}{
		{name: "no endpoints", n: 0, want: []int{-1, -1, -1}},
		{name: "one endpoint", n: 1, want: []int{0, 0, 0}},
		{name: "three in turn", n: 3, want: []int{0, 1, 2, 0, 1, 2, 0}},
		{name: "weights ignored", n: 2, want: []int{0, 1, 0, 1}},
		{name: "skip middle alternates the others", n: 3, skip: []int{1}, want: []int{0, 2, 0, 2, 0, 2}},
		{name: "skip first", n: 3, skip: []int{0}, want: []int{1, 2, 1, 2}},
		{name: "only last accepted", n: 4, skip: []int{0, 1, 2}, want: []int{3, 3, 3}},
		{name: "all skipped", n: 3, skip: []int{0, 1, 2}, want: []int{-1, -1}},
		{name: "no endpoints with skip", n: 0, skip: []int{0}, want: []int{-1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			eps := endpoints(slices.Repeat([]int{1}, tt.n)...)
			if tt.name == "weights ignored" {
				eps = endpoints(9, 1)
			}
			var skip func(int) bool
			if tt.skip != nil {
				skip = skipSet(tt.skip...)
			}
			if got := picks(NewRoundRobin(eps), nil, skip, len(tt.want)); !slices.Equal(got, tt.want) {
				t.Errorf("picks = %v, want %v", got, tt.want)
			}
		})
	}
}

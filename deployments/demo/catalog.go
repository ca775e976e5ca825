package main

import "time"

// Product is an item of the demo shop's catalog.
type Product struct {
	ID         int    `json:"id"`
	Name       string `json:"name"`
	PriceCents int    `json:"price_cents"`
	Currency   string `json:"currency"`
	Stock      int    `json:"stock"`
}

// User is a customer of the demo shop.
type User struct {
	ID      int    `json:"id"`
	Name    string `json:"name"`
	Email   string `json:"email"`
	Country string `json:"country"` // ISO 3166-1 alpha-2
}

// Order is a purchase: the products bought (a product listed twice was
// bought twice) and their total price.
type Order struct {
	ID         int       `json:"id"`
	UserID     int       `json:"user_id"`
	ProductIDs []int     `json:"product_ids"`
	TotalCents int       `json:"total_cents"`
	Status     string    `json:"status"`
	CreatedAt  time.Time `json:"created_at"`
}

// catalog is the demo data one instance serves. Every instance gets its own
// copy from newCatalog, so orders created on one instance stay there, the
// way they would with a per-instance cache or database shard.
type catalog struct {
	products []Product
	users    []User
	orders   []Order
}

// newCatalog returns a fresh copy of the baked-in data. All prices are in
// euros so that an order's total is a plain sum.
func newCatalog() catalog {
	at := func(s string) time.Time {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			panic("demo catalog: bad timestamp " + s)
		}
		return t
	}
	return catalog{
		products: []Product{
			{ID: 1, Name: "Espresso beans, 1 kg", PriceCents: 2490, Currency: "EUR", Stock: 42},
			{ID: 2, Name: "Pour-over kettle", PriceCents: 4990, Currency: "EUR", Stock: 15},
			{ID: 3, Name: "Ceramic mug", PriceCents: 1290, Currency: "EUR", Stock: 120},
			{ID: 4, Name: "Burr grinder", PriceCents: 12900, Currency: "EUR", Stock: 8},
			{ID: 5, Name: "Paper filters, 100 pack", PriceCents: 590, Currency: "EUR", Stock: 300},
			{ID: 6, Name: "Milk frother", PriceCents: 3490, Currency: "EUR", Stock: 23},
			{ID: 7, Name: "Digital scale", PriceCents: 2990, Currency: "EUR", Stock: 31},
			{ID: 8, Name: "Travel tumbler", PriceCents: 1990, Currency: "EUR", Stock: 64},
			{ID: 9, Name: "Cold brew jar", PriceCents: 2290, Currency: "EUR", Stock: 17},
			{ID: 10, Name: "Descaling tablets", PriceCents: 890, Currency: "EUR", Stock: 210},
		},
		users: []User{
			{ID: 1, Name: "Ada Lovelace", Email: "ada@example.com", Country: "GB"},
			{ID: 2, Name: "Grace Hopper", Email: "grace@example.com", Country: "US"},
			{ID: 3, Name: "Sofía Ramírez", Email: "sofia@example.com", Country: "ES"},
			{ID: 4, Name: "Kenji Tanaka", Email: "kenji@example.com", Country: "JP"},
			{ID: 5, Name: "Lena Fischer", Email: "lena@example.com", Country: "DE"},
		},
		orders: []Order{
			{ID: 1, UserID: 1, ProductIDs: []int{1, 3}, TotalCents: 3780, Status: "delivered", CreatedAt: at("2025-01-14T09:12:00Z")},
			{ID: 2, UserID: 2, ProductIDs: []int{4}, TotalCents: 12900, Status: "shipped", CreatedAt: at("2025-02-03T16:45:10Z")},
			{ID: 3, UserID: 3, ProductIDs: []int{2, 5, 5}, TotalCents: 6170, Status: "paid", CreatedAt: at("2025-02-20T11:03:42Z")},
			{ID: 4, UserID: 1, ProductIDs: []int{7}, TotalCents: 2990, Status: "cancelled", CreatedAt: at("2025-03-08T08:30:00Z")},
			{ID: 5, UserID: 4, ProductIDs: []int{9, 10}, TotalCents: 3180, Status: "pending", CreatedAt: at("2025-03-15T22:17:05Z")},
			{ID: 6, UserID: 5, ProductIDs: []int{6, 3, 8}, TotalCents: 6770, Status: "paid", CreatedAt: at("2025-03-16T07:59:31Z")},
		},
	}
}

func (c *catalog) product(id int) (Product, bool) {
	for _, p := range c.products {
		if p.ID == id {
			return p, true
		}
	}
	return Product{}, false
}

func (c *catalog) user(id int) (User, bool) {
	for _, u := range c.users {
		if u.ID == id {
			return u, true
		}
	}
	return User{}, false
}

func (c *catalog) order(id int) (Order, bool) {
	for _, o := range c.orders {
		if o.ID == id {
			return o, true
		}
	}
	return Order{}, false
}

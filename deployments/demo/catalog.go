package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Money is an amount in a currency's minor units (cents), shown in JSON as
// {"amount": "24.90", "currency": "EUR"}: the amount is a decimal string so
// that no client rounds it through a float.
type Money struct {
	Cents    int64
	Currency string // ISO 4217
}

func eur(cents int64) Money { return Money{Cents: cents, Currency: "EUR"} }

type moneyJSON struct {
	Amount   string `json:"amount"`
	Currency string `json:"currency"`
}

// MarshalJSON writes {"amount": "12.90", "currency": "EUR"}.
func (m Money) MarshalJSON() ([]byte, error) {
	sign, c := "", m.Cents
	if c < 0 {
		sign, c = "-", -c
	}
	return json.Marshal(moneyJSON{fmt.Sprintf("%s%d.%02d", sign, c/100, c%100), m.Currency})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (m *Money) UnmarshalJSON(b []byte) error {
	var v moneyJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	units, frac, ok := strings.Cut(v.Amount, ".")
	if !ok || len(frac) != 2 {
		return fmt.Errorf("invalid amount %q: want a decimal with two places, such as 12.90", v.Amount)
	}
	u, err := strconv.ParseInt(units, 10, 64)
	if err != nil {
		return fmt.Errorf("invalid amount %q: %w", v.Amount, err)
	}
	f, err := strconv.ParseUint(frac, 10, 8)
	if err != nil {
		return fmt.Errorf("invalid amount %q: %w", v.Amount, err)
	}
	cents := u*100 + int64(f)
	if strings.HasPrefix(units, "-") {
		cents = u*100 - int64(f)
	}
	*m = Money{Cents: cents, Currency: v.Currency}
	return nil
}

// Product is an item of the demo shop's catalog.
type Product struct {
	ID          int      `json:"id"`
	SKU         string   `json:"sku"`
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Price       Money    `json:"price"`
	Stock       int      `json:"stock"`
	Category    string   `json:"category"`
	Images      []string `json:"images"` // absolute URLs
}

// Address is a postal address.
type Address struct {
	Street     string `json:"street"`
	City       string `json:"city"`
	PostalCode string `json:"postal_code"`
	Country    string `json:"country"` // ISO 3166-1 alpha-2
}

// User is a customer of the demo shop.
type User struct {
	ID        int       `json:"id"`
	Name      string    `json:"name"`
	Email     string    `json:"email"`
	Tier      string    `json:"tier"` // standard, gold or platinum
	Address   Address   `json:"address"`
	CreatedAt time.Time `json:"created_at"`
}

// Item is one line of an order: a product, how many, and its price when
// the order was placed.
type Item struct {
	ProductID int   `json:"product_id"`
	Quantity  int   `json:"quantity"`
	UnitPrice Money `json:"unit_price"`
}

// Order is a purchase: the products bought (a product listed twice was
// bought twice), the same as lines with quantities, and the total price.
type Order struct {
	ID         int       `json:"id"`
	UserID     int       `json:"user_id"`
	ProductIDs []int     `json:"product_ids"`
	Items      []Item    `json:"items"`
	Total      Money     `json:"total"`
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

// image is the URL of a product picture (example.com: nothing is fetched).
func image(slug string, n int) string {
	return fmt.Sprintf("https://images.example.com/products/%s-%d.jpg", slug, n)
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
	c := catalog{
		products: []Product{
			{1, "COF-ESP-1000", "Espresso beans, 1 kg", "Dark roast of Brazilian and Ethiopian beans, chocolate and hazelnut notes.", eur(2490), 42, "coffee", []string{image("espresso-beans", 1), image("espresso-beans", 2)}},
			{2, "BRW-KTL-0100", "Pour-over kettle", "1 l gooseneck kettle in brushed steel, for a slow, even pour.", eur(4990), 15, "brewing", []string{image("pour-over-kettle", 1)}},
			{3, "CUP-MUG-0350", "Ceramic mug", "350 ml stoneware mug, dishwasher safe.", eur(1290), 120, "cups", []string{image("ceramic-mug", 1), image("ceramic-mug", 2)}},
			{4, "GRN-BUR-0040", "Burr grinder", "Conical steel burrs, 40 grind settings from espresso to cold brew.", eur(12900), 8, "grinders", []string{image("burr-grinder", 1)}},
			{5, "BRW-FLT-0100", "Paper filters, 100 pack", "Unbleached size 02 paper filters.", eur(590), 300, "brewing", []string{image("paper-filters", 1)}},
			{6, "ACC-FRO-0001", "Milk frother", "Handheld frother, two AA batteries included.", eur(3490), 23, "accessories", []string{image("milk-frother", 1)}},
			{7, "ACC-SCL-0001", "Digital scale", "0.1 g resolution with a built-in timer.", eur(2990), 31, "accessories", []string{image("digital-scale", 1), image("digital-scale", 2)}},
			{8, "CUP-TMB-0450", "Travel tumbler", "450 ml double-walled tumbler with a leak-proof lid.", eur(1990), 64, "cups", []string{image("travel-tumbler", 1)}},
			{9, "BRW-CBJ-1500", "Cold brew jar", "1.5 l glass jar with a fine steel filter.", eur(2290), 17, "brewing", []string{image("cold-brew-jar", 1)}},
			{10, "ACC-DSC-0010", "Descaling tablets", "Ten citric-acid tablets for kettles and machines.", eur(890), 210, "accessories", []string{image("descaling-tablets", 1)}},
		},
		users: []User{
			{1, "Ada Lovelace", "ada@example.com", "platinum", Address{"12 St James's Square", "London", "SW1Y 4JH", "GB"}, at("2024-03-02T10:15:00Z")},
			{2, "Grace Hopper", "grace@example.com", "gold", Address{"1 Navy Pier", "Arlington", "22202", "US"}, at("2024-05-19T14:02:31Z")},
			{3, "Sofía Ramírez", "sofia@example.com", "standard", Address{"Calle de Alcalá 48", "Madrid", "28014", "ES"}, at("2024-08-07T08:45:12Z")},
			{4, "Kenji Tanaka", "kenji@example.com", "gold", Address{"2-11-3 Meguro", "Tokyo", "153-0063", "JP"}, at("2024-11-23T23:59:59Z")},
			{5, "Lena Fischer", "lena@example.com", "standard", Address{"Torstraße 101", "Berlin", "10119", "DE"}, at("2025-01-06T12:00:00Z")},
		},
	}
	for _, o := range []struct {
		user     int
		products []int
		status   string
		at       string
	}{
		{1, []int{1, 3}, "delivered", "2025-01-14T09:12:00Z"},
		{2, []int{4}, "shipped", "2025-02-03T16:45:10Z"},
		{3, []int{2, 5, 5}, "paid", "2025-02-20T11:03:42Z"},
		{1, []int{7}, "cancelled", "2025-03-08T08:30:00Z"},
		{4, []int{9, 10}, "pending", "2025-03-15T22:17:05Z"},
		{5, []int{6, 3, 8}, "paid", "2025-03-16T07:59:31Z"},
	} {
		order, err := c.newOrder(len(c.orders)+1, o.user, o.products, o.status, at(o.at))
		if err != nil {
			panic("demo catalog: " + err.Error())
		}
		c.orders = append(c.orders, order)
	}
	return c
}

// newOrder prices productIDs at today's prices: one item per distinct
// product, in the order of first appearance, and their total.
func (c *catalog) newOrder(id, userID int, productIDs []int, status string, created time.Time) (Order, error) {
	o := Order{ID: id, UserID: userID, ProductIDs: productIDs, Total: eur(0), Status: status, CreatedAt: created}
	for _, pid := range productIDs {
		p, ok := c.product(pid)
		if !ok {
			return Order{}, fmt.Errorf("unknown product id %d in product_ids", pid)
		}
		o.Total.Cents += p.Price.Cents
		found := false
		for i := range o.Items {
			if o.Items[i].ProductID == pid {
				o.Items[i].Quantity++
				found = true
				break
			}
		}
		if !found {
			o.Items = append(o.Items, Item{ProductID: pid, Quantity: 1, UnitPrice: p.Price})
		}
	}
	return o, nil
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

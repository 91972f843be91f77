/*
 * sluice.c — the Sluice transform SDK for C (ABI v1, docs/abi.md).
 * See sluice.h for the API and README.md for how to build a transform.
 */
#include "sluice.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT(name) __attribute__((export_name(name)))

__attribute__((import_module("sluice"), import_name("log"))) void
sluice_host_log(int32_t level, const char *ptr, int32_t len);

/* ---------------------------------------------------------------- buffers */

/* A growable byte buffer. */
typedef struct buf {
	char *p;
	size_t len, cap;
} buf;

static void buf_reserve(buf *b, size_t more) {
	if (b->len + more <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap < b->len + more)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (!p)
		__builtin_trap(); /* the host reports the trap and retries record by record */
	b->p = p;
	b->cap = cap;
}

static void buf_put(buf *b, const void *p, size_t n) {
	buf_reserve(b, n);
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

/* The writers below expect room reserved (little-endian, as WebAssembly is). */
static inline char *put_u32(char *o, uint32_t v) {
	memcpy(o, &v, 4);
	return o + 4;
}

static inline char *put_bytes(char *o, sluice_str s) {
	o = put_u32(o, (uint32_t)s.len);
	memcpy(o, s.ptr, s.len);
	return o + s.len;
}

/*
 * The scratch arena: bump allocation in one block, reset before every
 * callback. When a callback needs more, older blocks are kept until the
 * reset, which then replaces them all by one block big enough for next time.
 */
typedef struct block {
	struct block *prev;
	size_t used, cap;
	char data[];
} block;

static block *arena;

void *sluice_scratch(size_t n) {
	n = (n + 7) & ~(size_t)7;
	if (!arena || arena->cap - arena->used < n) {
		size_t cap = arena ? arena->cap * 2 : 64 * 1024;
		while (cap < n)
			cap *= 2;
		block *b = malloc(sizeof(block) + cap);
		if (!b)
			__builtin_trap();
		b->prev = arena;
		b->used = 0;
		b->cap = cap;
		arena = b;
	}
	void *p = arena->data + arena->used;
	arena->used += n;
	return p;
}

static void index_drop(void);

static void scratch_reset(void) {
	index_drop();
	if (!arena)
		return;
	if (arena->prev) {
		size_t total = 0;
		for (block *b = arena; b; b = b->prev)
			total += b->cap;
		while (arena) {
			block *prev = arena->prev;
			free(arena);
			arena = prev;
		}
		sluice_scratch(total);
	}
	arena->used = 0;
}

/* ---------------------------------------------------------------- JSON scanning */

static inline bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static inline const char *skip_ws(const char *p, const char *e) {
	if (p < e && (unsigned char)*p > ' ') /* compact JSON: no whitespace */
		return p;
	while (p < e && is_ws(*p))
		p++;
	return p;
}

/* A mask with the high bit of every byte of w that is '"' or '\\' (the
 * classic has-zero-byte test); its lowest set bit is exact, so ctz finds the
 * first such byte. Little-endian, as WebAssembly is. */
static inline uint64_t quote_or_backslash(uint64_t w) {
	const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
	uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');
	return (((q - ones) & ~q) | ((b - ones) & ~b)) & highs;
}

/* p at '"'; returns the position after the closing quote, or NULL, and
 * sets *esc when the string has escapes. Plain runs are skipped eight bytes
 * at a time. */
static const char *skip_string_esc(const char *p, const char *e, bool *esc) {
	p++;
	while (e - p >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		uint64_t m = quote_or_backslash(w);
		if (!m) {
			p += 8;
			continue;
		}
		p += __builtin_ctzll(m) >> 3;
		if (*p == '"')
			return p + 1;
		*esc = true;
		p += 2;
	}
	for (; p < e; p++) {
		if (*p == '"')
			return p + 1;
		if (*p == '\\') {
			*esc = true;
			p++;
		}
	}
	return NULL;
}

static inline const char *skip_string(const char *p, const char *e) {
	bool esc;
	return skip_string_esc(p, e, &esc);
}

/* Returns the end of the JSON value starting at p, or NULL. The text is
 * trusted to be valid JSON (the host checks every value it reads). */
static const char *skip_value(const char *p, const char *e) {
	if (p >= e)
		return NULL;
	if (*p == '"')
		return skip_string(p, e);
	if (*p == '{' || *p == '[') {
		int depth = 0;
		while (p < e) {
			char c = *p;
			if (c == '"') {
				if (!(p = skip_string(p, e)))
					return NULL;
				continue;
			}
			if (c == '{' || c == '[')
				depth++;
			else if ((c == '}' || c == ']') && --depth == 0)
				return p + 1;
			p++;
		}
		return NULL;
	}
	/* a number, true, false or null: its characters are digits, lowercase
	 * letters, '-', '+', '.' and 'E' */
	const char *s = p;
	while (p < e && ((unsigned char)(*p - 'a') < 26u || (unsigned char)(*p - '0') < 10u || *p == '-' || *p == '.' ||
	                 *p == '+' || *p == 'E'))
		p++;
	return p == s ? NULL : p;
}

sluice_kind sluice_kind_of(sluice_str raw) {
	if (!raw.len)
		return SLUICE_MISSING;
	switch (raw.ptr[0]) {
	case '{': return SLUICE_OBJECT;
	case '[': return SLUICE_ARRAY;
	case '"': return SLUICE_STRING;
	case 't':
	case 'f': return SLUICE_BOOL;
	case 'n': return SLUICE_NULL;
	default: return SLUICE_NUMBER;
	}
}

static int hexval(char c) {
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

static uint32_t hex4(const char *p) {
	uint32_t v = 0;
	for (int i = 0; i < 4; i++) {
		int h = hexval(p[i]);
		if (h < 0)
			return 0xFFFD;
		v = v << 4 | (uint32_t)h;
	}
	return v;
}

static char *put_utf8(char *o, uint32_t c) {
	if (c < 0x80) {
		*o++ = (char)c;
	} else if (c < 0x800) {
		*o++ = (char)(0xC0 | c >> 6);
		*o++ = (char)(0x80 | (c & 0x3F));
	} else if (c < 0x10000) {
		*o++ = (char)(0xE0 | c >> 12);
		*o++ = (char)(0x80 | (c >> 6 & 0x3F));
		*o++ = (char)(0x80 | (c & 0x3F));
	} else {
		*o++ = (char)(0xF0 | c >> 18);
		*o++ = (char)(0x80 | (c >> 12 & 0x3F));
		*o++ = (char)(0x80 | (c >> 6 & 0x3F));
		*o++ = (char)(0x80 | (c & 0x3F));
	}
	return o;
}

/* Decodes the body of a JSON string (between the quotes, n bytes) into o,
 * which has room for n bytes (decoding never grows the text). Lone
 * surrogates become U+FFFD. Returns the decoded length. */
static size_t unescape(const char *s, size_t n, char *o) {
	const char *e = s + n;
	char *start = o;
	while (s < e) {
		if (*s != '\\') {
			*o++ = *s++;
			continue;
		}
		s++;
		char c = *s++;
		switch (c) {
		case 'b': *o++ = '\b'; break;
		case 'f': *o++ = '\f'; break;
		case 'n': *o++ = '\n'; break;
		case 'r': *o++ = '\r'; break;
		case 't': *o++ = '\t'; break;
		case 'u': {
			uint32_t u = e - s >= 4 ? hex4(s) : 0xFFFD;
			s += e - s >= 4 ? 4 : e - s;
			if (u >= 0xD800 && u < 0xDC00) {
				if (e - s >= 6 && s[0] == '\\' && s[1] == 'u') {
					uint32_t lo = hex4(s + 2);
					if (lo >= 0xDC00 && lo < 0xE000) {
						u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
						s += 6;
					} else {
						u = 0xFFFD;
					}
				} else {
					u = 0xFFFD;
				}
			} else if (u >= 0xDC00 && u < 0xE000) {
				u = 0xFFFD;
			}
			o = put_utf8(o, u);
			break;
		}
		default: *o++ = c; break; /* \" \\ \/ */
		}
	}
	return (size_t)(o - start);
}

/* Compares the raw key body k (between quotes) with name. */
static bool key_equals(const char *k, size_t klen, const char *name, size_t nlen) {
	if (!memchr(k, '\\', klen))
		return klen == nlen && memcmp(k, name, nlen) == 0;
	if (klen < nlen)
		return false;
	char small[256];
	char *tmp = klen <= sizeof small ? small : sluice_scratch(klen);
	size_t n = unescape(k, klen, tmp);
	return n == nlen && memcmp(tmp, name, nlen) == 0;
}

/* Where a member is, and what is around it, in an object's text. */
typedef struct member {
	const char *key;       /* the key's opening quote */
	const char *val, *val_end;
	const char *prev_end;  /* end of the previous member's value, or NULL */
	const char *next_key;  /* the next member's key, or NULL */
	const char *last_end;  /* end of the last member's value, or just after '{' */
} member;

/* Finds name in the object text obj. Returns 1 when found, 0 when not (m->last_end
 * then says where to append), -1 when obj is not an object. */
static int find_member(sluice_str obj, const char *name, size_t nlen, member *m) {
	const char *p = obj.ptr, *e = obj.ptr + obj.len;
	p = skip_ws(p, e);
	if (p >= e || *p != '{')
		return -1;
	p++;
	m->last_end = p;
	const char *prev_end = NULL;
	int found = 0;
	for (;;) {
		p = skip_ws(p, e);
		if (p >= e)
			return -1;
		if (*p == '}')
			return found;
		if (*p != '"')
			return -1;
		const char *key = p;
		const char *key_end = skip_string(p, e);
		if (!key_end)
			return -1;
		p = skip_ws(key_end, e);
		if (p >= e || *p != ':')
			return -1;
		const char *val = skip_ws(p + 1, e);
		const char *val_end = skip_value(val, e);
		if (!val_end)
			return -1;
		if (found) {
			m->next_key = key;
			return 1;
		}
		if (key_equals(key + 1, (size_t)(key_end - key - 2), name, nlen)) {
			found = 1;
			m->key = key;
			m->val = val;
			m->val_end = val_end;
			m->prev_end = prev_end;
			m->next_key = NULL;
		}
		prev_end = val_end;
		m->last_end = val_end;
		p = skip_ws(val_end, e);
		if (p < e && *p == ',')
			p++;
	}
}

sluice_kind sluice_lookup(sluice_str obj, const char *name, size_t name_len, sluice_str *raw) {
	member m;
	if (find_member(obj, name, name_len, &m) != 1)
		return SLUICE_MISSING;
	sluice_str v = {m.val, (size_t)(m.val_end - m.val)};
	if (raw)
		*raw = v;
	return sluice_kind_of(v);
}


/* ---------------------------------------------------------------- numbers */

static const double pow10_exact[23] = {
	1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

/* Shortest digits, fast path: finds the integer n of at most 15 digits and
 * the power j with n / 10^j == v, checking each candidate with exactly
 * rounded arithmetic (n < 2^53 and 10^|j| <= 10^22 are both exact). At 15
 * digits or fewer at most one candidate reads back as v, so this is the
 * shortest. Returns the digit count, or 0 when v needs 16 or 17 digits. */
static int shortest_fast(double v, char *digits, int *point) {
	int k = (int)floor(log10(v));
	for (int p = 1; p <= 15; p++) {
		int j = p - 1 - k;
		if (j > 22 || j < -22)
			continue;
		double est = j >= 0 ? v * pow10_exact[j] : v / pow10_exact[-j];
		double n0 = nearbyint(est);
		for (int dn = -1; dn <= 1; dn++) {
			double n = n0 + dn;
			if (n < 1 || n >= 1e15)
				continue;
			if ((j >= 0 ? n / pow10_exact[j] : n * pow10_exact[-j]) != v)
				continue;
			uint64_t u = (uint64_t)n;
			char tmp[20];
			int nd = 0;
			while (u) {
				tmp[nd++] = (char)('0' + u % 10);
				u /= 10;
			}
			*point = nd - j;
			int lead = 0;
			while (tmp[lead] == '0') /* trailing zeros of n */
				lead++;
			int out = 0;
			for (int i = nd - 1; i >= lead; i--)
				digits[out++] = tmp[i];
			return out;
		}
	}
	return 0;
}

/* Big unsigned integers, little-endian 32-bit limbs, for the exact path. */
#define BN_LIMBS 160 /* enough for any double and for parsing up to 800 digits */
typedef struct bn {
	int n;
	uint32_t d[BN_LIMBS];
} bn;

static void bn_set(bn *a, uint64_t v) {
	a->n = 0;
	while (v) {
		a->d[a->n++] = (uint32_t)v;
		v >>= 32;
	}
}

static void bn_mul_small(bn *a, uint32_t m) {
	uint64_t carry = 0;
	for (int i = 0; i < a->n; i++) {
		uint64_t t = (uint64_t)a->d[i] * m + carry;
		a->d[i] = (uint32_t)t;
		carry = t >> 32;
	}
	if (carry)
		a->d[a->n++] = (uint32_t)carry;
}

static void bn_mul_pow10(bn *a, int k) {
	for (; k >= 9; k -= 9)
		bn_mul_small(a, 1000000000u);
	static const uint32_t small[9] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000};
	if (k)
		bn_mul_small(a, small[k]);
}

static void bn_add_small(bn *a, uint32_t v) {
	uint64_t carry = v;
	for (int i = 0; i < a->n && carry; i++) {
		uint64_t t = (uint64_t)a->d[i] + carry;
		a->d[i] = (uint32_t)t;
		carry = t >> 32;
	}
	if (carry)
		a->d[a->n++] = (uint32_t)carry;
}

static void bn_shl(bn *a, int bits) {
	int limbs = bits / 32, s = bits % 32;
	if (!a->n)
		return;
	if (s) {
		uint32_t carry = 0;
		for (int i = 0; i < a->n; i++) {
			uint32_t v = a->d[i];
			a->d[i] = v << s | carry;
			carry = v >> (32 - s);
		}
		if (carry)
			a->d[a->n++] = carry;
	}
	if (limbs) {
		memmove(a->d + limbs, a->d, (size_t)a->n * 4);
		memset(a->d, 0, (size_t)limbs * 4);
		a->n += limbs;
	}
}

static int bn_cmp(const bn *a, const bn *b) {
	if (a->n != b->n)
		return a->n < b->n ? -1 : 1;
	for (int i = a->n - 1; i >= 0; i--)
		if (a->d[i] != b->d[i])
			return a->d[i] < b->d[i] ? -1 : 1;
	return 0;
}

static void bn_add(const bn *a, const bn *b, bn *out) {
	int n = a->n > b->n ? a->n : b->n;
	uint64_t carry = 0;
	for (int i = 0; i < n; i++) {
		uint64_t t = carry + (i < a->n ? a->d[i] : 0) + (i < b->n ? b->d[i] : 0);
		out->d[i] = (uint32_t)t;
		carry = t >> 32;
	}
	out->n = n;
	if (carry)
		out->d[out->n++] = (uint32_t)carry;
}

/* a -= b, with a >= b. */
static void bn_sub(bn *a, const bn *b) {
	int64_t borrow = 0;
	for (int i = 0; i < a->n; i++) {
		int64_t t = (int64_t)a->d[i] - (i < b->n ? b->d[i] : 0) - borrow;
		borrow = t < 0;
		a->d[i] = (uint32_t)(t + (borrow << 32));
	}
	while (a->n && !a->d[a->n - 1])
		a->n--;
}

/* Shortest digits, exact path: Burger & Dybvig's free-format algorithm
 * ("Printing floating-point numbers quickly and accurately", 1996). */
static int shortest_exact(double v, char *digits, int *point) {
	uint64_t bits;
	memcpy(&bits, &v, 8);
	int be = (int)(bits >> 52 & 0x7FF);
	uint64_t f = bits & ((1ull << 52) - 1);
	int e;
	if (be) {
		f |= 1ull << 52;
		e = be - 1075;
	} else {
		e = -1074;
	}
	bool even = (f & 1) == 0;
	bool boundary = f == 1ull << 52 && be > 1; /* the gap below v is half the gap above */
	bn r, s, mp, mm, t;
	if (e >= 0) {
		bn_set(&r, f);
		bn_shl(&r, e + (boundary ? 2 : 1));
		bn_set(&s, boundary ? 4 : 2);
		bn_set(&mp, 1);
		bn_shl(&mp, e + (boundary ? 1 : 0));
		bn_set(&mm, 1);
		bn_shl(&mm, e);
	} else {
		bn_set(&r, f);
		bn_shl(&r, boundary ? 2 : 1);
		bn_set(&s, 1);
		bn_shl(&s, -e + (boundary ? 2 : 1));
		bn_set(&mp, boundary ? 2 : 1);
		bn_set(&mm, 1);
	}
	int k = (int)ceil(log10(v) - 1e-10);
	if (k >= 0) {
		bn_mul_pow10(&s, k);
	} else {
		bn_mul_pow10(&r, -k);
		bn_mul_pow10(&mp, -k);
		bn_mul_pow10(&mm, -k);
	}
	bn_add(&r, &mp, &t);
	int c = bn_cmp(&t, &s);
	if (even ? c >= 0 : c > 0) {
		k++;
	} else {
		bn_mul_small(&r, 10);
		bn_mul_small(&mp, 10);
		bn_mul_small(&mm, 10);
	}
	*point = k;
	int nd = 0;
	for (;;) {
		int d = 0;
		while (bn_cmp(&r, &s) >= 0) {
			bn_sub(&r, &s);
			d++;
		}
		int lo = bn_cmp(&r, &mm);
		bool tc1 = even ? lo <= 0 : lo < 0;
		bn_add(&r, &mp, &t);
		int hi = bn_cmp(&t, &s);
		bool tc2 = even ? hi >= 0 : hi > 0;
		if (!tc1 && !tc2) {
			digits[nd++] = (char)('0' + d);
			bn_mul_small(&r, 10);
			bn_mul_small(&mp, 10);
			bn_mul_small(&mm, 10);
			continue;
		}
		if (tc1 && tc2) {
			bn_add(&r, &r, &t); /* the nearer one; a tie goes to the even digit */
			int half = bn_cmp(&t, &s);
			if (half > 0 || (half == 0 && d % 2 == 1))
				d++;
		} else if (tc2) {
			d++;
		}
		digits[nd++] = (char)('0' + d);
		return nd;
	}
}

/* Significant digits kept when parsing; beyond them a nonzero tail becomes
 * one sticky digit, which keeps every rounding decision exact. */
#define MAX_DIGITS 800

static bn px_d, px_p, px_l, px_r, px_t;

/* Compares digits × 10^e10 (px_d holds the digits, px_p 10^-e10 when
 * e10 < 0) with m × 2^q, exactly. */
static int cmp_exact(int e10, uint64_t m, int q) {
	bn *l = &px_l, *r = &px_r;
	*l = px_d;
	if (e10 >= 0) {
		bn_mul_pow10(l, e10);
		bn_set(r, m);
	} else { /* r = 10^-e10 × m */
		*r = px_p;
		bn_mul_small(r, (uint32_t)m);
		if (m >> 32) {
			px_t = px_p;
			bn_mul_small(&px_t, (uint32_t)(m >> 32));
			bn_shl(&px_t, 32);
			bn_add(r, &px_t, r);
		}
	}
	if (q >= 0)
		bn_shl(r, q);
	else
		bn_shl(l, -q);
	return bn_cmp(l, r);
}

/* The correctly rounded value of digits × 10^exp10: an estimate from the
 * first 19 digits (w), then moved one ulp at a time until the exact
 * comparisons with the halfway points to its neighbours hold (Clinger's
 * AlgorithmR, with comparisons only). Infinity when it overflows. */
static double parse_exact(const unsigned char *digits, int nd, int exp10, bool dropped, uint64_t w, int wd) {
	bn_set(&px_d, 0);
	for (int i = 0; i < nd; i++) {
		bn_mul_small(&px_d, 10);
		bn_add_small(&px_d, digits[i]);
	}
	int e10 = exp10;
	if (dropped) {
		bn_mul_small(&px_d, 10);
		bn_add_small(&px_d, 1);
		e10--;
	}
	if (e10 < 0) {
		bn_set(&px_p, 1);
		bn_mul_pow10(&px_p, -e10);
	}
	int we = exp10 + (nd - wd);
	double z;
	if (we > 300)
		z = (double)w * pow(10, we - 300) * 1e300;
	else if (we < -300)
		z = (double)w * pow(10, we + 300) * 1e-300;
	else
		z = (double)w * pow(10, we);
	if (isinf(z))
		z = DBL_MAX;
	for (int iter = 0; iter < 4096; iter++) {
		uint64_t bits;
		memcpy(&bits, &z, 8);
		int be = (int)(bits >> 52 & 0x7FF);
		uint64_t m = bits & ((1ull << 52) - 1);
		int q;
		if (be) {
			m |= 1ull << 52;
			q = be - 1075;
		} else {
			q = -1074;
		}
		bool odd = m & 1;
		int up = cmp_exact(e10, 2 * m + 1, q - 1); /* vs the upper halfway point */
		if (up > 0 || (up == 0 && odd)) {
			if (z == DBL_MAX)
				return INFINITY;
			bits++;
			memcpy(&z, &bits, 8);
			continue;
		}
		if (z == 0)
			return 0;
		int lo = m == 1ull << 52 && be > 1 ? cmp_exact(e10, 4 * m - 1, q - 2) : cmp_exact(e10, 2 * m - 1, q - 1);
		if (lo < 0 || (lo == 0 && odd)) {
			bits--;
			memcpy(&z, &bits, 8);
			continue;
		}
		return z;
	}
	return z;
}

/* Parses a JSON number: correctly rounded to the nearest double, ties to
 * even. Most numbers take the exact fast path (at most 15 digits and a
 * power of ten up to 22, Clinger's), the others parse_exact. wasi-libc's
 * strtod would do, but it computes in software 128-bit long doubles. */
bool sluice_number(sluice_str raw, double *out) {
	const char *p = raw.ptr, *e = p + raw.len;
	bool neg = false;
	if (p < e && *p == '-') {
		neg = true;
		p++;
	}
	if (p >= e)
		return false;
	unsigned char digits[MAX_DIGITS];
	int nd = 0, exp10 = 0; /* the value is digits × 10^exp10 */
	bool dropped = false;  /* a nonzero digit beyond MAX_DIGITS */
	if (*p == '0') {
		p++;
	} else if (*p >= '1' && *p <= '9') {
		for (; p < e && *p >= '0' && *p <= '9'; p++) {
			if (nd < MAX_DIGITS) {
				digits[nd++] = (unsigned char)(*p - '0');
			} else {
				exp10++;
				dropped |= *p != '0';
			}
		}
	} else {
		return false;
	}
	if (p < e && *p == '.') {
		const char *s = ++p;
		for (; p < e && *p >= '0' && *p <= '9'; p++) {
			if (nd == 0 && *p == '0') {
				exp10--; /* leading zeros are not significant */
			} else if (nd < MAX_DIGITS) {
				digits[nd++] = (unsigned char)(*p - '0');
				exp10--;
			} else {
				dropped |= *p != '0';
			}
		}
		if (p == s)
			return false;
	}
	if (p < e && (*p == 'e' || *p == 'E')) {
		p++;
		bool eneg = false;
		if (p < e && (*p == '+' || *p == '-'))
			eneg = *p++ == '-';
		const char *s = p;
		int x = 0;
		for (; p < e && *p >= '0' && *p <= '9'; p++)
			if (x < 100000)
				x = x * 10 + (*p - '0');
		if (p == s)
			return false;
		exp10 += eneg ? -x : x;
	}
	if (p != e)
		return false;
	while (nd > 0 && !dropped && digits[nd - 1] == 0) { /* nor are trailing ones */
		nd--;
		exp10++;
	}
	uint64_t w = 0;
	int wd = nd < 19 ? nd : 19;
	for (int i = 0; i < wd; i++)
		w = w * 10 + digits[i];
	double v;
	if (nd == 0)
		v = 0;
	else if (nd + exp10 > 310)
		return false; /* too large for a double: not a number here, as in the Go SDK */
	else if (nd + exp10 < -330)
		v = 0;
	else if (nd <= 15 && !dropped && exp10 >= -22 && exp10 <= 22)
		v = exp10 >= 0 ? (double)w * pow10_exact[exp10] : (double)w / pow10_exact[-exp10];
	else if (isinf(v = parse_exact(digits, nd, exp10, dropped, w, wd)))
		return false;
	*out = neg ? -v : v;
	return true;
}

bool sluice_get_number(const sluice_record *r, const char *name, double *out) {
	sluice_str raw;
	return sluice_get(r, name, &raw) == SLUICE_NUMBER && sluice_number(raw, out);
}

/* Lays out digits (nd of them, value 0.digits × 10^point) as JavaScript's
 * Number.prototype.toString does. */
static size_t layout(const char *digits, int nd, int point, char *o) {
	char *start = o;
	if (nd <= point && point <= 21) {
		memcpy(o, digits, (size_t)nd);
		o += nd;
		for (int i = nd; i < point; i++)
			*o++ = '0';
	} else if (0 < point && point <= 21) {
		memcpy(o, digits, (size_t)point);
		o += point;
		*o++ = '.';
		memcpy(o, digits + point, (size_t)(nd - point));
		o += nd - point;
	} else if (-6 < point && point <= 0) {
		*o++ = '0';
		*o++ = '.';
		for (int i = point; i < 0; i++)
			*o++ = '0';
		memcpy(o, digits, (size_t)nd);
		o += nd;
	} else {
		*o++ = digits[0];
		if (nd > 1) {
			*o++ = '.';
			memcpy(o, digits + 1, (size_t)(nd - 1));
			o += nd - 1;
		}
		int x = point - 1;
		*o++ = 'e';
		*o++ = x < 0 ? '-' : '+';
		if (x < 0)
			x = -x;
		char tmp[4];
		int n = 0;
		do {
			tmp[n++] = (char)('0' + x % 10);
			x /= 10;
		} while (x);
		while (n)
			*o++ = tmp[--n];
	}
	return (size_t)(o - start);
}

size_t sluice_format_number(double v, char *out) {
	if (!isfinite(v))
		return 0;
	char *o = out;
	if (signbit(v)) {
		*o++ = '-';
		v = -v;
	}
	if (v == 0) {
		*o++ = '0';
		return (size_t)(o - out);
	}
	char digits[20];
	int point;
	int nd = shortest_fast(v, digits, &point);
	if (!nd)
		nd = shortest_exact(v, digits, &point);
	return (size_t)(o - out) + layout(digits, nd, point, o);
}

/* ---------------------------------------------------------------- strings */

bool sluice_string(sluice_str raw, sluice_str *out) {
	if (raw.len < 2 || raw.ptr[0] != '"')
		return false;
	const char *body = raw.ptr + 1;
	size_t n = raw.len - 2;
	if (!memchr(body, '\\', n)) {
		out->ptr = body;
		out->len = n;
		return true;
	}
	char *o = sluice_scratch(n);
	out->len = unescape(body, n, o);
	out->ptr = o;
	return true;
}

bool sluice_get_string(const sluice_record *r, const char *name, sluice_str *out) {
	sluice_str raw;
	return sluice_get(r, name, &raw) == SLUICE_STRING && sluice_string(raw, out);
}

bool sluice_get_bool(const sluice_record *r, const char *name, bool *out) {
	sluice_str raw;
	if (sluice_get(r, name, &raw) != SLUICE_BOOL)
		return false;
	*out = raw.ptr[0] == 't';
	return true;
}

/* The length of the valid UTF-8 sequence at s (n bytes available), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n) {
	unsigned char c = s[0];
	size_t need;
	unsigned char lo = 0x80, hi = 0xBF;
	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		need = 1;
	else if (c >= 0xE0 && c <= 0xEF) {
		need = 2;
		if (c == 0xE0)
			lo = 0xA0;
		else if (c == 0xED)
			hi = 0x9F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		need = 3;
		if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F;
	} else
		return 0;
	if (n <= need || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i <= need; i++)
		if (s[i] < 0x80 || s[i] > 0xBF)
			return 0;
	return need + 1;
}

/* Writes s as a JSON string (quotes included) to o, which has room for
 * 6*len+2 bytes. Escapes '"', '\\', \n, \r, \t and other control
 * characters (as \u00XX), and writes each byte of invalid UTF-8 as \ufffd:
 * the same bytes as the Go SDK's AppendQuote. */
static size_t quote(const char *s, size_t len, char *o) {
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)s;
	char *start = o;
	*o++ = '"';
	for (size_t i = 0; i < len;) {
		unsigned char c = u[i];
		if (c >= 0x80) {
			size_t n = utf8_len(u + i, len - i);
			if (n) {
				memcpy(o, u + i, n);
				o += n;
				i += n;
			} else {
				memcpy(o, "\\ufffd", 6);
				o += 6;
				i++;
			}
			continue;
		}
		i++;
		if (c >= 0x20 && c != '"' && c != '\\') {
			*o++ = (char)c;
			continue;
		}
		*o++ = '\\';
		switch (c) {
		case '"': *o++ = '"'; break;
		case '\\': *o++ = '\\'; break;
		case '\n': *o++ = 'n'; break;
		case '\r': *o++ = 'r'; break;
		case '\t': *o++ = 't'; break;
		default:
			*o++ = 'u';
			*o++ = '0';
			*o++ = '0';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		}
	}
	*o++ = '"';
	return (size_t)(o - start);
}

/* ---------------------------------------------------------------- the field index */

/*
 * The top-level fields of the record value looked at last, so that the
 * get/set/delete calls of a callback scan a record's bytes once. It is keyed
 * by the value's address and length: a value never changes in place (an edit
 * writes a new one to scratch memory, and the index follows it), and no
 * memory is reused within a callback; scratch_reset drops the index.
 */
typedef struct index_field {
	uint32_t k0, k1; /* the key's body, between the quotes */
	uint32_t v0, v1; /* the value */
	bool esc;        /* the key has escapes */
} index_field;

static struct {
	const char *ptr;
	size_t len;
	bool valid, object;
	uint32_t open; /* where '{' is */
	index_field *f;
	uint32_t n, cap;
} idx;

static void index_drop(void) { idx.valid = false; }

static void index_push(index_field f) {
	if (idx.n == idx.cap) {
		idx.cap = idx.cap ? idx.cap * 2 : 32;
		idx.f = realloc(idx.f, idx.cap * sizeof *idx.f);
		if (!idx.f)
			__builtin_trap();
	}
	idx.f[idx.n++] = f;
}

/* Makes the index describe v; returns whether v is a JSON object. */
static bool index_of(sluice_str v) {
	if (idx.valid && idx.ptr == v.ptr && idx.len == v.len)
		return idx.object;
	idx.valid = true;
	idx.ptr = v.ptr;
	idx.len = v.len;
	idx.object = false;
	idx.n = 0;
	const char *b = v.ptr, *e = b + v.len;
	const char *p = skip_ws(b, e);
	if (p >= e || *p != '{')
		return false;
	idx.open = (uint32_t)(p - b);
	p = skip_ws(p + 1, e);
	if (p < e && *p == '}')
		return idx.object = true;
	while (p < e && *p == '"') {
		bool esc = false;
		const char *ke = skip_string_esc(p, e, &esc);
		if (!ke)
			return false;
		index_field f = {(uint32_t)(p + 1 - b), (uint32_t)(ke - 1 - b), 0, 0, esc};
		p = skip_ws(ke, e);
		if (p >= e || *p != ':')
			return false;
		p = skip_ws(p + 1, e);
		const char *ve = skip_value(p, e);
		if (!ve)
			return false;
		f.v0 = (uint32_t)(p - b);
		f.v1 = (uint32_t)(ve - b);
		index_push(f);
		p = skip_ws(ve, e);
		if (p < e && *p == ',')
			p = skip_ws(p + 1, e);
		else
			return idx.object = p < e && *p == '}';
	}
	return false;
}

/* The index of the first field called name, or -1. */
static int index_find(const char *name, size_t nlen) {
	for (uint32_t j = 0; j < idx.n; j++) {
		const index_field *f = &idx.f[j];
		const char *k = idx.ptr + f->k0;
		size_t klen = f->k1 - f->k0;
		if (f->esc ? key_equals(k, klen, name, nlen) : klen == nlen && memcmp(k, name, nlen) == 0)
			return (int)j;
	}
	return -1;
}

/* Moves the fields from j on by delta bytes. */
static void index_shift(uint32_t j, int64_t delta) {
	for (; j < idx.n; j++) {
		idx.f[j].k0 = (uint32_t)(idx.f[j].k0 + delta);
		idx.f[j].k1 = (uint32_t)(idx.f[j].k1 + delta);
		idx.f[j].v0 = (uint32_t)(idx.f[j].v0 + delta);
		idx.f[j].v1 = (uint32_t)(idx.f[j].v1 + delta);
	}
}

sluice_kind sluice_get(const sluice_record *r, const char *name, sluice_str *raw) {
	if (!index_of(r->value))
		return SLUICE_MISSING;
	int j = index_find(name, strlen(name));
	if (j < 0)
		return SLUICE_MISSING;
	sluice_str v = {r->value.ptr + idx.f[j].v0, idx.f[j].v1 - idx.f[j].v0};
	if (raw)
		*raw = v;
	return sluice_kind_of(v);
}

/* ---------------------------------------------------------------- editing */

/* Replaces bytes [a, z) of r's value with the concatenation of parts, in a
 * new value in scratch memory, which the index then describes. */
static void splice(sluice_record *r, size_t a, size_t z, const sluice_str *parts, int nparts) {
	size_t tail = r->value.len - z;
	size_t mid = 0;
	for (int i = 0; i < nparts; i++)
		mid += parts[i].len;
	char *o = sluice_scratch(a + mid + tail);
	char *w = o;
	memcpy(w, r->value.ptr, a);
	w += a;
	for (int i = 0; i < nparts; i++) {
		memcpy(w, parts[i].ptr, parts[i].len);
		w += parts[i].len;
	}
	memcpy(w, r->value.ptr + z, tail);
	r->value.ptr = o;
	r->value.len = a + mid + tail;
	idx.ptr = r->value.ptr;
	idx.len = r->value.len;
}

/* The SDKs share their messages with the Go SDK, so that a record fails
 * with the same reason whatever language its transform is written in. */
static int not_object(void) { return sluice_fail("sluice: value is not a JSON object"); }

int sluice_set_raw(sluice_record *r, const char *name, const char *json, size_t len) {
	if (!index_of(r->value))
		return not_object();
	size_t nlen = strlen(name);
	sluice_str val = {json, len};
	int j = index_find(name, nlen);
	if (j >= 0) { /* in place */
		index_field *f = &idx.f[j];
		int64_t delta = (int64_t)len - (int64_t)(f->v1 - f->v0);
		splice(r, f->v0, f->v1, &val, 1);
		f->v1 = f->v0 + (uint32_t)len;
		index_shift((uint32_t)j + 1, delta);
		return 0;
	}
	/* at the end: ,"name":json after the last value (or just "name":json) */
	uint32_t at = idx.n ? idx.f[idx.n - 1].v1 : idx.open + 1;
	char *key = sluice_scratch(6 * nlen + 4);
	size_t klen = 0;
	if (idx.n)
		key[klen++] = ',';
	size_t q = quote(name, nlen, key + klen);
	index_field f = {at + (uint32_t)klen + 1, at + (uint32_t)(klen + q) - 1, 0, 0, memchr(key + klen, '\\', q) != NULL};
	klen += q;
	key[klen++] = ':';
	f.v0 = at + (uint32_t)klen;
	f.v1 = f.v0 + (uint32_t)len;
	sluice_str parts[2] = {{key, klen}, val};
	splice(r, at, at, parts, 2);
	index_push(f);
	return 0;
}

int sluice_set_string(sluice_record *r, const char *name, const char *s, size_t len) {
	char *q = sluice_scratch(6 * len + 2);
	return sluice_set_raw(r, name, q, quote(s, len, q));
}

int sluice_set_cstring(sluice_record *r, const char *name, const char *s) {
	return sluice_set_string(r, name, s, strlen(s));
}

int sluice_set_number(sluice_record *r, const char *name, double v) {
	char num[32];
	size_t n = sluice_format_number(v, num);
	if (!n)
		return sluice_fail("sluice: set \"%s\": %s has no JSON form", name, isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf");
	return sluice_set_raw(r, name, num, n);
}

int sluice_set_bool(sluice_record *r, const char *name, bool v) {
	return v ? sluice_set_raw(r, name, "true", 4) : sluice_set_raw(r, name, "false", 5);
}

int sluice_delete(sluice_record *r, const char *name) {
	if (!index_of(r->value))
		return not_object();
	int j = index_find(name, strlen(name));
	if (j < 0)
		return 0;
	const index_field *f = idx.f;
	size_t a, z;
	if (j > 0) { /* from the previous value's end: `, "name": value` */
		a = f[j - 1].v1;
		z = f[j].v1;
	} else if (idx.n > 1) { /* the first of several: `"name": value, ` up to the next key */
		a = f[0].k0 - 1;
		z = f[1].k0 - 1;
	} else { /* the only field */
		a = f[0].k0 - 1;
		z = f[0].v1;
	}
	splice(r, a, z, NULL, 0);
	memmove(idx.f + j, idx.f + j + 1, (idx.n - (uint32_t)j - 1) * sizeof *idx.f);
	idx.n--;
	index_shift((uint32_t)j, -(int64_t)(z - a));
	return 1;
}

void sluice_set_key(sluice_record *r, const char *key, size_t len) {
	r->key.ptr = key;
	r->key.len = len;
}

void sluice_set_dest(sluice_record *r, const char *dest, size_t len) {
	r->dest.ptr = dest;
	r->dest.len = len;
}

/* ---------------------------------------------------------------- headers */

static bool header_is(const sluice_header *h, const char *name, size_t nlen) {
	return h->name.len == nlen && memcmp(h->name.ptr, name, nlen) == 0;
}

bool sluice_get_header(const sluice_record *r, const char *name, sluice_str *value) {
	size_t nlen = strlen(name);
	for (uint32_t i = 0; i < r->header_count; i++)
		if (header_is(&r->headers[i], name, nlen)) {
			if (value)
				*value = r->headers[i].value;
			return true;
		}
	return false;
}

/* A copy of n bytes in scratch memory. */
static sluice_str scratch_copy(const char *p, size_t n) {
	char *c = sluice_scratch(n ? n : 1);
	memcpy(c, p, n);
	return (sluice_str){c, n};
}

void sluice_set_header(sluice_record *r, const char *name, const char *value, size_t len) {
	size_t nlen = strlen(name);
	uint32_t n = r->header_count, j = 0;
	while (j < n && !header_is(&r->headers[j], name, nlen))
		j++;
	sluice_header *h = sluice_scratch((j < n ? n : n + 1) * sizeof *h);
	if (n)
		memcpy(h, r->headers, n * sizeof *h);
	if (j == n) { /* none: added at the end */
		h[n].name = scratch_copy(name, nlen);
		r->header_count = n + 1;
	}
	h[j].value = scratch_copy(value, len);
	r->headers = h;
}

void sluice_set_header_cstring(sluice_record *r, const char *name, const char *value) {
	sluice_set_header(r, name, value, strlen(value));
}

int sluice_delete_header(sluice_record *r, const char *name) {
	size_t nlen = strlen(name);
	uint32_t n = r->header_count, kept = 0;
	sluice_header *h = NULL;
	for (uint32_t i = 0; i < n; i++) {
		if (!header_is(&r->headers[i], name, nlen)) {
			if (h)
				h[kept] = r->headers[i];
			kept++;
		} else if (!h) { /* the first match: copy what came before it */
			h = sluice_scratch(n * sizeof *h);
			memcpy(h, r->headers, kept * sizeof *h);
		}
	}
	if (!h)
		return 0;
	r->headers = h;
	r->header_count = kept;
	return 1;
}

bool sluice_array(sluice_str raw, sluice_iter *it) {
	const char *p = raw.ptr, *e = raw.ptr + raw.len;
	p = skip_ws(p, e);
	if (p >= e || *p != '[') {
		it->p = it->end = p;
		return false;
	}
	it->p = p + 1;
	it->end = e;
	return true;
}

bool sluice_next(sluice_iter *it, sluice_str *elem) {
	const char *p = skip_ws(it->p, it->end);
	if (p < it->end && *p == ',')
		p = skip_ws(p + 1, it->end);
	if (p >= it->end || *p == ']') {
		it->p = it->end;
		return false;
	}
	const char *q = skip_value(p, it->end);
	if (!q) {
		it->p = it->end;
		return false;
	}
	elem->ptr = p;
	elem->len = (size_t)(q - p);
	it->p = q;
	return true;
}

bool sluice_object(sluice_str raw, sluice_iter *it) {
	const char *p = raw.ptr, *e = raw.ptr + raw.len;
	p = skip_ws(p, e);
	if (p >= e || *p != '{') {
		it->p = it->end = p;
		return false;
	}
	it->p = p + 1;
	it->end = e;
	return true;
}

bool sluice_next_member(sluice_iter *it, sluice_str *name, sluice_str *value) {
	const char *e = it->end;
	const char *p = skip_ws(it->p, e);
	if (p < e && *p == ',')
		p = skip_ws(p + 1, e);
	const char *key_end = p < e && *p == '"' ? skip_string(p, e) : NULL;
	const char *val = key_end ? skip_ws(key_end, e) : NULL;
	const char *val_end = val && val < e && *val == ':' ? skip_value(val = skip_ws(val + 1, e), e) : NULL;
	if (!val_end) {
		it->p = e;
		return false;
	}
	sluice_string((sluice_str){p, (size_t)(key_end - p)}, name);
	value->ptr = val;
	value->len = (size_t)(val_end - val);
	it->p = val_end;
	return true;
}

/* ---------------------------------------------------------------- the ABI */

struct sluice_output {
	buf b;
	uint32_t count;
	uint32_t index;
};

static sluice_init_fn user_init;
static sluice_process_fn user_process;
static void *user_state;
static buf input;
static sluice_output output;
static buf error_msg;

void sluice_register(sluice_init_fn init, sluice_process_fn process) {
	user_init = init;
	user_process = process;
}

int sluice_fail(const char *fmt, ...) {
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	error_msg.len = 0;
	if (n > 0) {
		buf_reserve(&error_msg, (size_t)n + 1);
		va_start(ap, fmt);
		vsnprintf(error_msg.p, (size_t)n + 1, fmt, ap);
		va_end(ap);
		error_msg.len = (size_t)n;
	}
	return -1;
}

void sluice_log(int level, const char *msg, size_t len) {
	sluice_host_log(level, msg, (int32_t)len);
}

void sluice_emit(sluice_output *out, const sluice_record *r) {
	size_t n = 24 + r->value.len + r->key.len + r->dest.len;
	for (uint32_t i = 0; i < r->header_count; i++)
		n += 8 + r->headers[i].name.len + r->headers[i].value.len;
	buf_reserve(&out->b, n);
	char *o = out->b.p + out->b.len;
	o = put_u32(o, out->index);
	o = put_u32(o, 0);
	o = put_bytes(o, r->value);
	o = put_bytes(o, r->key);
	o = put_bytes(o, r->dest);
	o = put_u32(o, r->header_count);
	for (uint32_t i = 0; i < r->header_count; i++) {
		o = put_bytes(o, r->headers[i].name);
		o = put_bytes(o, r->headers[i].value);
	}
	out->b.len = (size_t)(o - out->b.p);
	out->count++;
}

static int64_t pack(const void *p, size_t len) {
	return (int64_t)((uint64_t)(uintptr_t)p << 32 | (uint32_t)len);
}

EXPORT("sluice_abi_version") int32_t sluice_abi_version(void) { return 1; }

/* One input buffer, grown as needed and handed out again on every call. */
EXPORT("sluice_alloc") void *sluice_alloc(int32_t size) {
	size_t n = size > 0 ? (size_t)size : 1;
	if (n > input.cap) {
		free(input.p);
		input.p = malloc(n);
		input.cap = input.p ? n : 0;
	}
	return input.p;
}

static int64_t error_result(const char *fallback) {
	if (!error_msg.len)
		buf_put(&error_msg, fallback, strlen(fallback));
	return pack(error_msg.p, error_msg.len);
}

EXPORT("sluice_init") int64_t sluice_init(const char *ptr, int32_t len) {
	if (!user_process)
		return error_result("no transform registered: add SLUICE_TRANSFORM(init, process) to the module");
	scratch_reset();
	error_msg.len = 0;
	sluice_record config = {.value = {ptr, (size_t)len}};
	if (user_init && user_init(&config, &user_state) != 0)
		return error_result("init failed");
	return 0;
}

/* A cursor over the input batch; any read past its end traps. */
typedef struct reader {
	const char *p, *end;
} reader;

static uint32_t read_u32(reader *rd) {
	if (rd->end - rd->p < 4)
		__builtin_trap();
	const unsigned char *u = (const unsigned char *)rd->p;
	rd->p += 4;
	return (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
}

static sluice_str read_bytes(reader *rd) {
	uint32_t n = read_u32(rd);
	if ((size_t)(rd->end - rd->p) < n)
		__builtin_trap();
	sluice_str s = {rd->p, n};
	rd->p += n;
	return s;
}

EXPORT("sluice_process") int64_t sluice_process(const char *ptr, int32_t len) {
	reader rd = {ptr, ptr + len};
	sluice_output *out = &output;
	out->b.len = 0;
	out->count = 0;
	buf_reserve(&out->b, 4);
	out->b.len = 4; /* the count, written at the end */
	uint32_t n = read_u32(&rd);
	for (uint32_t i = 0; i < n; i++) {
		scratch_reset();
		sluice_record r;
		r.value = read_bytes(&rd);
		r.key = read_bytes(&rd);
		r.dest = read_bytes(&rd);
		r.header_count = read_u32(&rd);
		sluice_header *h = NULL;
		if (r.header_count) {
			if ((size_t)(rd.end - rd.p) / 8 < r.header_count)
				__builtin_trap();
			h = sluice_scratch(r.header_count * sizeof *h);
			for (uint32_t j = 0; j < r.header_count; j++) {
				h[j].name = read_bytes(&rd);
				h[j].value = read_bytes(&rd);
			}
		}
		r.headers = h;
		out->index = i;
		size_t mark = out->b.len;
		uint32_t mark_count = out->count;
		error_msg.len = 0;
		if (user_process(&r, out, user_state) != 0) {
			out->b.len = mark;
			out->count = mark_count;
			if (!error_msg.len)
				buf_put(&error_msg, "error", 5);
			buf_reserve(&out->b, 12 + error_msg.len);
			char *o = out->b.p + out->b.len;
			o = put_u32(o, i);
			o = put_u32(o, 1);
			o = put_bytes(o, (sluice_str){error_msg.p, error_msg.len});
			out->b.len = (size_t)(o - out->b.p);
			out->count++;
		}
	}
	put_u32(out->b.p, out->count);
	return pack(out->b.p, out->b.len);
}

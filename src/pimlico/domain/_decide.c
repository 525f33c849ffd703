/*
 * pimlico.domain._decide: the decision index's hot path in C.
 *
 * A Decider answers DecisionIndex.decide(principal_id, permission, scope, at) by walking the
 * index's own Python structures (see decisions.py: a principal's view, its table of patterns,
 * the grants of the groups it reaches and its paths to them) exactly as the pure-Python
 * DecisionIndex._decide does, and builds the same Decision and Grant objects. It only reads:
 * the index stays owned and changed by Python. Whatever it does not expect (a principal with
 * no view, a disabled one, a structure of another shape, arguments given by keyword) goes to
 * the pure-Python engine, which answers with the same words; the C path never guesses.
 *
 * Why it is safe to hold borrowed references during a walk: the walk runs no Python code
 * (dict and frozenset look-ups of exact str keys, tuple reads, float compares), so no other
 * thread can run and change what is being read until it returns.
 *
 * Optional: built when a C compiler is there (setuptools' "optional" extension); without it,
 * decisions.py uses the pure-Python engine, which gives the same answers (the tests run both).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <structmember.h>

#define CACHE_MAX 65536 /* as the lru_caches of ancestors() and candidate_patterns() */

#define FOUND 1
#define NOT_FOUND 0
#define FAILED (-1)
#define FALLBACK (-2)

enum { D_ALLOWED, D_PRINCIPAL, D_PERMISSION, D_SCOPE, D_AT, D_REASON, D_GRANT, D_REVISION, D_N };
static const char *decision_fields[D_N] = {
    "allowed", "principal_id", "permission", "scope", "at", "reason", "grant", "revision",
};
enum { G_GRANT, G_PATTERN, G_HOLDER, G_PATH, G_N };
static const char *grant_fields[G_N] = {"_grant", "pattern", "holder_id", "_path"};

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *index;       /* the DecisionIndex (for its revision) */
    PyObject *packed;      /* index._packed: a PackedMap, principal id -> Packed */
    PyObject *fallback;    /* index._decide: the pure-Python engine */
    PyObject *ancestors;   /* scope -> tuple of the scopes covering it, interned */
    PyObject *candidates;  /* permission -> tuple of the patterns matching it, interned */
    PyObject *scope_cache; /* dict: scope -> ancestors(scope) */
    PyObject *perm_cache;  /* dict: permission -> candidates(permission) */
    PyObject *granted;     /* the reasons, as the pure engine words them */
    PyObject *denied;
    PyTypeObject *decision_type;
    PyTypeObject *grant_type;
    Py_ssize_t decision_offsets[D_N];
    Py_ssize_t grant_offsets[G_N];
} Decider;

static PyObject *str_revision;
static PyObject *str_timestamp;

/* -- instants -------------------------------------------------------------------------- */

/* Days from 1970-01-01 to the proleptic Gregorian date y-m-d (H. Hinnant's algorithm). */
static long long
days_from_civil(long long y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const long long era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (long long)doe - 719468;
}

#define MAX_EXACT (1LL << 53) /* integers up to this are exact as doubles */

/* ``at.timestamp()``. For a datetime in datetime.UTC it is worked out here, as CPython does
 * it: whole microseconds since the epoch, divided by 10**6 once (both exact as doubles, so
 * the quotient is the same correctly rounded float). Anything else asks the object. */
static int
timestamp_of(PyObject *at, double *out)
{
    if (PyDateTime_CheckExact(at)) {
        PyDateTime_DateTime *dt = (PyDateTime_DateTime *)at;
        if (dt->hastzinfo && dt->tzinfo == PyDateTime_TimeZone_UTC) {
            long long days = days_from_civil(PyDateTime_GET_YEAR(at), PyDateTime_GET_MONTH(at),
                                             PyDateTime_GET_DAY(at));
            long long seconds = days * 86400 + PyDateTime_DATE_GET_HOUR(at) * 3600 +
                                PyDateTime_DATE_GET_MINUTE(at) * 60 +
                                PyDateTime_DATE_GET_SECOND(at);
            long long micros = seconds * 1000000 + PyDateTime_DATE_GET_MICROSECOND(at);
            if (micros > -MAX_EXACT && micros < MAX_EXACT) { /* (years 1685 to 2255) */
                *out = (double)micros / 1e6;
                return 0;
            }
        }
    }
    PyObject *value = PyObject_CallMethodNoArgs(at, str_timestamp);
    if (value == NULL) {
        return -1;
    }
    double t = PyFloat_AsDouble(value);
    Py_DECREF(value);
    if (t == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    *out = t;
    return 0;
}

static int
as_double(PyObject *value, double *out)
{
    if (PyFloat_CheckExact(value)) {
        *out = PyFloat_AS_DOUBLE(value);
        return 0;
    }
    if (!PyFloat_Check(value) && !PyLong_Check(value)) {
        return FALLBACK;
    }
    double v = PyFloat_AsDouble(value);
    if (v == -1.0 && PyErr_Occurred()) {
        return FAILED;
    }
    *out = v;
    return 0;
}

/* Is ``start <= t < end`` for the window at items 1 and 2 of a grant? */
static int
window_holds(PyObject *grant, double t)
{
    double start, end;
    int r = as_double(PyTuple_GET_ITEM(grant, 1), &start);
    if (r < 0) {
        return r;
    }
    r = as_double(PyTuple_GET_ITEM(grant, 2), &end);
    if (r < 0) {
        return r;
    }
    return start <= t && t < end;
}

/* Is ``scope`` one of ``scopes`` (the question's scope and those above it)? Both sides are
 * interned (DecisionIndex._hold, _interned_ancestors): equal scopes are the same object, so
 * the grant's scope string is never read, only its address compared. */
static inline int
covered(PyObject *scope, PyObject *scopes)
{
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(scopes); i++) {
        if (PyTuple_GET_ITEM(scopes, i) == scope) {
            return 1;
        }
    }
    return 0;
}

/* -- a principal's packed table ---------------------------------------------------------- */

/*
 * A Packed is one principal's view (see decisions.py: enabled, a table left to packing, then
 * per group holder it reaches: that group's pattern -> grants dict, the paths to it, its id)
 * and its own pattern -> grants dict, copied into one block of memory: a small hash table of
 * every pattern it may hold (by address: they are interned), then each pattern's sources (its
 * own grants, with their scopes and windows inline, first, then the holders that hold the
 * pattern, in the view's order: the order of the pure engine's table), then the group
 * holders, then the windows of the paths to them. At a million assignments nearly every
 * object a decision reads is a cache miss, one after another: in the view that is the tuple,
 * the table dict, its keys, the sources tuple, the grant tuple, its floats and the path's;
 * here most of them are a few neighbouring lines.
 *
 * A Packed is a snapshot of its view: DecisionIndex packs the view again whenever it changes
 * the view (a reader sees the old one or the new one, as with the view). The groups' grants
 * dicts are shared and live, as in the view: a group's grant that changes is seen at once.
 */

typedef struct {
    PyObject *pattern; /* NULL: an empty slot */
    uint32_t first;    /* its cells: first its own grants (4 cells each), then its groups' */
    uint16_t own;
    uint16_t groups;
} Slot;

typedef struct { /* one of the principal's own grants: 4 cells */
    PyObject *grant;
    PyObject *scope;
    double start;
    double end;
} Own;

typedef union { /* cells: 8 bytes each */
    PyObject *object;
    double number;
    Py_ssize_t holder; /* a group holder's index */
} Cell;

typedef struct {
    PyObject *held; /* the group's pattern -> grants dict */
    PyObject *id;
    Py_ssize_t first_path;
    Py_ssize_t paths;
} Holder;

typedef struct {
    double start;
    double end;
    PyObject *path;
} PathWindow;

typedef struct {
    PyObject_VAR_HEAD
    int enabled;
    int id_kind;          /* the principal's id, inline: compared without reading its str */
    Py_ssize_t id_length;
    Py_hash_t id_hash;
    const char *id_data;
    Py_ssize_t mask;
    Py_ssize_t cells_count;
    Py_ssize_t holders_count;
    Py_ssize_t paths_count;
    Slot *slots;
    Cell *cells;
    Holder *holders;
    PathWindow *paths;
    double data[1];
} Packed;

#define OWN_CELLS ((Py_ssize_t)(sizeof(Own) / sizeof(Cell)))

static PyTypeObject PackedType;

static inline size_t
slot_of(PyObject *pattern, Py_ssize_t mask)
{
    return (size_t)(((uint64_t)(uintptr_t)pattern * 0x9E3779B97F4A7C15ull) >> 32) & (size_t)mask;
}

static const Slot *
find_slot(const Packed *packed, PyObject *pattern)
{
    for (size_t i = slot_of(pattern, packed->mask);; i = (i + 1) & (size_t)packed->mask) {
        const Slot *slot = &packed->slots[i];
        if (slot->pattern == pattern) {
            return slot;
        }
        if (slot->pattern == NULL) {
            return NULL;
        }
    }
}

static int
is_interned_str(PyObject *value)
{
    return PyUnicode_CheckExact(value) && PyUnicode_CHECK_INTERNED(value);
}

static int
is_number(PyObject *value)
{
    return PyFloat_CheckExact(value) || PyLong_CheckExact(value);
}

/*
 * Packing counts each pattern's sources first, in a scratch table of its own (reused from
 * call to call: the GIL is held throughout), so that the packed table is sized for the
 * distinct patterns, not for every pattern of every holder.
 */
typedef struct {
    PyObject *pattern; /* NULL: an empty slot */
    Py_ssize_t own;
    Py_ssize_t groups;
} Tally;

static Tally *tallies;
static Py_ssize_t tallies_size;

static Tally *
tally_of(Tally *table, Py_ssize_t mask, PyObject *pattern)
{
    size_t i = slot_of(pattern, mask);
    while (table[i].pattern != NULL && table[i].pattern != pattern) {
        i = (i + 1) & (size_t)mask;
    }
    table[i].pattern = pattern;
    return &table[i];
}

static Slot *
slot_for(Packed *packed, PyObject *pattern)
{
    return (Slot *)find_slot(packed, pattern);
}

/* Is ``grants`` a tuple of own grants as the walk reads them: (scope, start, end, ...)? */
static int
are_grants(PyObject *grants)
{
    if (!PyTuple_CheckExact(grants) || PyTuple_GET_SIZE(grants) == 0) {
        return 0;
    }
    for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(grants); j++) {
        PyObject *grant = PyTuple_GET_ITEM(grants, j);
        if (!PyTuple_CheckExact(grant) || PyTuple_GET_SIZE(grant) < 5 ||
            !is_interned_str(PyTuple_GET_ITEM(grant, 0)) ||
            !is_number(PyTuple_GET_ITEM(grant, 1)) || !is_number(PyTuple_GET_ITEM(grant, 2))) {
            return 0;
        }
    }
    return 1;
}

/*
 * Does ``view`` (with ``own``, the principal's own pattern -> grants dict, or None) have the
 * shape the walk expects? Counts, per distinct pattern, its own grants and the group holders
 * that hold it, into the scratch table (``*mask``), and the paths. 0: not a known shape;
 * -1: an error (out of memory).
 */
static int
measure(PyObject *view, PyObject *own, Py_ssize_t *mask, Py_ssize_t *paths)
{
    Py_ssize_t size = PyTuple_GET_SIZE(view);
    if (size < 2 || (size - 2) % 3 != 0 || !PyBool_Check(PyTuple_GET_ITEM(view, 0)) ||
        !(own == Py_None || PyDict_CheckExact(own))) {
        return 0;
    }
    Py_ssize_t holders = (size - 2) / 3;
    Py_ssize_t most = own == Py_None ? 0 : PyDict_GET_SIZE(own);
    *paths = 0;
    for (Py_ssize_t k = 0; k < holders; k++) {
        PyObject *held = PyTuple_GET_ITEM(view, 2 + 3 * k);
        PyObject *holder_paths = PyTuple_GET_ITEM(view, 3 + 3 * k);
        if (!PyDict_CheckExact(held) || !PyTuple_CheckExact(holder_paths)) {
            return 0;
        }
        for (Py_ssize_t p = 0; p < PyTuple_GET_SIZE(holder_paths); p++) {
            PyObject *path = PyTuple_GET_ITEM(holder_paths, p);
            if (!PyTuple_CheckExact(path) || PyTuple_GET_SIZE(path) < 2 ||
                !is_number(PyTuple_GET_ITEM(path, 0)) || !is_number(PyTuple_GET_ITEM(path, 1))) {
                return 0;
            }
        }
        *paths += PyTuple_GET_SIZE(holder_paths);
        most += PyDict_GET_SIZE(held);
    }
    Py_ssize_t size_needed = 8; /* at most 1/2 full */
    while (size_needed < most * 2) {
        size_needed *= 2;
    }
    if (size_needed > tallies_size) {
        Tally *grown = PyMem_Realloc(tallies, (size_t)size_needed * sizeof(Tally));
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        tallies = grown;
        tallies_size = size_needed;
    }
    memset(tallies, 0, (size_t)size_needed * sizeof(Tally));
    *mask = size_needed - 1;
    Py_ssize_t pos = 0;
    PyObject *pattern, *value;
    if (own != Py_None) {
        while (PyDict_Next(own, &pos, &pattern, &value)) {
            if (!is_interned_str(pattern) || !are_grants(value)) {
                return 0;
            }
            Tally *tally = tally_of(tallies, *mask, pattern);
            tally->own = PyTuple_GET_SIZE(value);
        }
    }
    for (Py_ssize_t k = 0; k < holders; k++) {
        pos = 0;
        while (PyDict_Next(PyTuple_GET_ITEM(view, 2 + 3 * k), &pos, &pattern, &value)) {
            if (!is_interned_str(pattern)) {
                return 0;
            }
            tally_of(tallies, *mask, pattern)->groups++;
        }
    }
    return 1;
}

/* A number measure() accepted, as a double (an int too large for one is an error). */
static int
number(PyObject *value, double *out)
{
    return as_double(value, out) < 0 ? -1 : 0;
}

static PyObject *
module_pack(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyUnicode_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, "pack(principal_id: str, view: tuple, own: dict | None)");
        return NULL;
    }
    PyObject *principal_id = args[0], *view = args[1], *own_held = args[2];
    Py_hash_t id_hash = PyObject_Hash(principal_id);
    if (id_hash == -1 || PyUnicode_READY(principal_id) < 0) {
        return NULL;
    }
    Py_ssize_t tally_mask, paths;
    if (!PyTuple_CheckExact(view)) {
        Py_RETURN_NONE;
    }
    int shape = measure(view, own_held, &tally_mask, &paths);
    if (shape < 0) {
        return NULL;
    }
    if (shape == 0) {
        Py_RETURN_NONE; /* not a view as the walk knows them: the pure engine decides */
    }
    Py_ssize_t patterns = 0, cells = 0;
    for (Py_ssize_t i = 0; i <= tally_mask; i++) {
        const Tally *tally = &tallies[i];
        if (tally->pattern != NULL) {
            if (tally->own > UINT16_MAX || tally->groups > UINT16_MAX) {
                Py_RETURN_NONE;
            }
            patterns++;
            cells += tally->own * OWN_CELLS + tally->groups;
        }
    }
    if (cells > UINT32_MAX) {
        Py_RETURN_NONE;
    }
    size_t id_bytes = (size_t)PyUnicode_GET_LENGTH(principal_id) * PyUnicode_KIND(principal_id);
    size_t id_room = (id_bytes + sizeof(double) - 1) / sizeof(double) * sizeof(double);
    Py_ssize_t slots = 8; /* at most 3/4 full */
    while (slots * 3 < patterns * 4) {
        slots *= 2;
    }
    Py_ssize_t holders = (PyTuple_GET_SIZE(view) - 2) / 3;
    size_t bytes = id_room + (size_t)slots * sizeof(Slot) + (size_t)cells * sizeof(Cell) +
                   (size_t)holders * sizeof(Holder) + (size_t)paths * sizeof(PathWindow);
    Packed *packed = PyObject_NewVar(Packed, &PackedType, (Py_ssize_t)(bytes / sizeof(double)));
    if (packed == NULL) {
        return NULL;
    }
    memset(packed->data, 0, bytes);
    char *cursor = (char *)packed->data;
    memcpy(cursor, PyUnicode_DATA(principal_id), id_bytes);
    packed->id_data = cursor;
    packed->id_kind = PyUnicode_KIND(principal_id);
    packed->id_length = PyUnicode_GET_LENGTH(principal_id);
    packed->id_hash = id_hash;
    cursor += id_room;
    packed->slots = (Slot *)cursor;
    cursor += (size_t)slots * sizeof(Slot);
    packed->cells = (Cell *)cursor;
    cursor += (size_t)cells * sizeof(Cell);
    packed->holders = (Holder *)cursor;
    cursor += (size_t)holders * sizeof(Holder);
    packed->paths = (PathWindow *)cursor;
    packed->enabled = PyTuple_GET_ITEM(view, 0) == Py_True;
    packed->mask = slots - 1;
    packed->cells_count = cells; /* the slots' own counts say which cells dealloc releases */
    packed->holders_count = 0;
    packed->paths_count = 0;
    /* The slots, each with room for its cells: its own grants (4 cells each), then the
     * indexes of the group holders that hold its pattern, counted up as they are filled. */
    uint32_t first = 0;
    for (Py_ssize_t i = 0; i <= tally_mask; i++) {
        const Tally *tally = &tallies[i];
        if (tally->pattern == NULL) {
            continue;
        }
        size_t j = slot_of(tally->pattern, packed->mask);
        while (packed->slots[j].pattern != NULL) {
            j = (j + 1) & (size_t)packed->mask;
        }
        Slot *slot = &packed->slots[j];
        slot->pattern = Py_NewRef(tally->pattern);
        slot->first = first;
        first += (uint32_t)(tally->own * OWN_CELLS + tally->groups);
    }
    Py_ssize_t pos = 0;
    PyObject *pattern, *grants;
    if (own_held != Py_None) { /* its own grants first: they are checked first */
        while (PyDict_Next(own_held, &pos, &pattern, &grants)) {
            Slot *slot = slot_for(packed, pattern);
            for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(grants); j++) {
                PyObject *item = PyTuple_GET_ITEM(grants, j);
                Own *own = (Own *)&packed->cells[slot->first + (uint32_t)slot->own * OWN_CELLS];
                own->grant = Py_NewRef(item);
                own->scope = Py_NewRef(PyTuple_GET_ITEM(item, 0));
                slot->own++;
                if (number(PyTuple_GET_ITEM(item, 1), &own->start) < 0 ||
                    number(PyTuple_GET_ITEM(item, 2), &own->end) < 0) {
                    Py_DECREF(packed);
                    return NULL;
                }
            }
        }
    }
    for (Py_ssize_t k = 0; k < holders; k++) {
        PyObject *held = PyTuple_GET_ITEM(view, 2 + 3 * k);
        PyObject *holder_paths = PyTuple_GET_ITEM(view, 3 + 3 * k);
        Holder *holder = &packed->holders[k];
        holder->held = Py_NewRef(held);
        holder->id = Py_NewRef(PyTuple_GET_ITEM(view, 4 + 3 * k));
        holder->first_path = packed->paths_count;
        holder->paths = PyTuple_GET_SIZE(holder_paths);
        packed->holders_count++;
        for (Py_ssize_t p = 0; p < holder->paths; p++) {
            PyObject *path = PyTuple_GET_ITEM(holder_paths, p);
            PathWindow *window = &packed->paths[packed->paths_count++];
            window->path = Py_NewRef(path);
            if (number(PyTuple_GET_ITEM(path, 0), &window->start) < 0 ||
                number(PyTuple_GET_ITEM(path, 1), &window->end) < 0) {
                Py_DECREF(packed);
                return NULL;
            }
        }
        pos = 0;
        PyObject *unused;
        while (PyDict_Next(held, &pos, &pattern, &unused)) {
            Slot *slot = slot_for(packed, pattern);
            uint32_t at = slot->first + (uint32_t)slot->own * OWN_CELLS + slot->groups++;
            packed->cells[at].holder = k;
        }
    }
    return (PyObject *)packed;
}

static void
packed_dealloc(Packed *self)
{
    for (Py_ssize_t i = 0; i <= self->mask; i++) {
        const Slot *slot = &self->slots[i];
        if (slot->pattern == NULL) {
            continue;
        }
        Py_DECREF(slot->pattern);
        Own *own = (Own *)&self->cells[slot->first];
        for (uint16_t j = 0; j < slot->own; j++, own++) {
            Py_XDECREF(own->grant);
            Py_XDECREF(own->scope);
        }
    }
    for (Py_ssize_t i = 0; i < self->holders_count; i++) {
        Py_XDECREF(self->holders[i].held);
        Py_XDECREF(self->holders[i].id);
    }
    for (Py_ssize_t i = 0; i < self->paths_count; i++) {
        Py_XDECREF(self->paths[i].path);
    }
    PyObject_Free(self);
}

static PyTypeObject PackedType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pimlico.domain._decide.Packed",
    .tp_doc = PyDoc_STR("one principal's view, packed for the C decision path"),
    .tp_basicsize = offsetof(Packed, data),
    .tp_itemsize = sizeof(double),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)packed_dealloc,
};

/* -- principal id -> Packed ------------------------------------------------------------ */

/*
 * The Decider's map from principal id to Packed: open addressing on the id's str hash, each
 * entry the hash and the Packed, which holds the id's characters inline. A look-up reads the
 * table's line and the Packed's first lines (which it reads next anyway), never the id's str
 * object as a dict's key comparison does: one cache miss fewer per decision, at this size.
 * Linear probing, with deletions that shift later entries back (no tombstones).
 */

typedef struct {
    Py_hash_t hash;
    Packed *packed; /* NULL: empty */
} MapEntry;

typedef struct {
    PyObject_HEAD
    Py_ssize_t used;
    Py_ssize_t mask;
    MapEntry *table;
} PackedMap;

static PyTypeObject PackedMapType;

/* Is ``packed``'s id the one with this hash, length, kind and characters? */
static inline int
has_id(const Packed *packed, Py_hash_t hash, Py_ssize_t length, int kind, const void *data)
{
    return packed->id_hash == hash && packed->id_length == length && packed->id_kind == kind &&
           memcmp(packed->id_data, data, (size_t)length * (size_t)kind) == 0;
}

static inline int
same_id(const Packed *packed, PyObject *id, Py_hash_t hash)
{
    return has_id(packed, hash, PyUnicode_GET_LENGTH(id), (int)PyUnicode_KIND(id),
                  PyUnicode_DATA(id));
}

/* The entry for ``id`` (an exact, ready str), or the empty one where it would go. */
static MapEntry *
map_slot(const PackedMap *map, PyObject *id, Py_hash_t hash)
{
    for (size_t i = (size_t)hash & (size_t)map->mask;; i = (i + 1) & (size_t)map->mask) {
        MapEntry *entry = &map->table[i];
        if (entry->packed == NULL ||
            (entry->hash == hash && same_id(entry->packed, id, hash))) {
            return entry;
        }
    }
}

static int
map_grow(PackedMap *map)
{
    Py_ssize_t size = (map->mask + 1) * 2;
    MapEntry *table = PyMem_Calloc((size_t)size, sizeof(MapEntry));
    if (table == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    MapEntry *old = map->table;
    Py_ssize_t old_size = map->mask + 1;
    map->table = table;
    map->mask = size - 1;
    for (Py_ssize_t i = 0; i < old_size; i++) {
        if (old[i].packed != NULL) {
            size_t j = (size_t)old[i].hash & (size_t)map->mask;
            while (table[j].packed != NULL) {
                j = (j + 1) & (size_t)map->mask;
            }
            table[j] = old[i];
        }
    }
    PyMem_Free(old);
    return 0;
}

static PyObject *
map_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    if (PyTuple_GET_SIZE(args) != 0 || (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0)) {
        PyErr_SetString(PyExc_TypeError, "PackedMap() takes no arguments");
        return NULL;
    }
    PackedMap *map = (PackedMap *)type->tp_alloc(type, 0);
    if (map == NULL) {
        return NULL;
    }
    map->mask = 7;
    map->table = PyMem_Calloc(8, sizeof(MapEntry));
    if (map->table == NULL) {
        Py_DECREF(map);
        return PyErr_NoMemory();
    }
    return (PyObject *)map;
}

static void
map_dealloc(PackedMap *map)
{
    if (map->table != NULL) {
        for (Py_ssize_t i = 0; i <= map->mask; i++) {
            Py_XDECREF(map->table[i].packed);
        }
        PyMem_Free(map->table);
    }
    Py_TYPE(map)->tp_free((PyObject *)map);
}

static int
id_argument(PyObject *id, Py_hash_t *hash)
{
    if (!PyUnicode_CheckExact(id)) {
        PyErr_SetString(PyExc_TypeError, "a principal id is a str");
        return -1;
    }
    *hash = PyObject_Hash(id);
    return *hash == -1 || PyUnicode_READY(id) < 0 ? -1 : 0;
}

static PyObject *
map_put(PackedMap *map, PyObject *packed)
{
    if (!Py_IS_TYPE(packed, &PackedType)) {
        PyErr_SetString(PyExc_TypeError, "PackedMap.put takes a Packed");
        return NULL;
    }
    if ((map->used + 1) * 4 > (map->mask + 1) * 3 && map_grow(map) < 0) {
        return NULL;
    }
    Packed *value = (Packed *)packed;
    /* Find by the Packed's own id: hash, then the inline characters. */
    MapEntry *entry = NULL;
    for (size_t i = (size_t)value->id_hash & (size_t)map->mask;; i = (i + 1) & (size_t)map->mask) {
        entry = &map->table[i];
        if (entry->packed == NULL) {
            break;
        }
        if (has_id(entry->packed, value->id_hash, value->id_length, value->id_kind,
                   value->id_data)) {
            break;
        }
    }
    Packed *old = entry->packed;
    entry->hash = value->id_hash;
    entry->packed = (Packed *)Py_NewRef(packed);
    if (old == NULL) {
        map->used++;
    }
    Py_XDECREF(old);
    Py_RETURN_NONE;
}

static PyObject *
map_get(PackedMap *map, PyObject *id)
{
    Py_hash_t hash;
    if (id_argument(id, &hash) < 0) {
        return NULL;
    }
    MapEntry *entry = map_slot(map, id, hash);
    return Py_NewRef(entry->packed != NULL ? (PyObject *)entry->packed : Py_None);
}

static PyObject *
map_pop(PackedMap *map, PyObject *id)
{
    Py_hash_t hash;
    if (id_argument(id, &hash) < 0) {
        return NULL;
    }
    MapEntry *entry = map_slot(map, id, hash);
    Packed *old = entry->packed;
    if (old == NULL) {
        Py_RETURN_NONE;
    }
    /* Shift back the entries after it that would no longer be found past the hole. */
    size_t hole = (size_t)(entry - map->table);
    size_t mask = (size_t)map->mask;
    entry->packed = NULL;
    for (size_t i = (hole + 1) & mask; map->table[i].packed != NULL; i = (i + 1) & mask) {
        size_t home = (size_t)map->table[i].hash & mask;
        if (((i - home) & mask) >= ((i - hole) & mask)) {
            map->table[hole] = map->table[i];
            map->table[i].packed = NULL;
            hole = i;
        }
    }
    map->used--;
    Py_DECREF(old);
    Py_RETURN_NONE;
}

static Py_ssize_t
map_length(PackedMap *map)
{
    return map->used;
}

static PyMethodDef map_methods[] = {
    {"put", (PyCFunction)map_put, METH_O, PyDoc_STR("keep a Packed under its principal's id")},
    {"get", (PyCFunction)map_get, METH_O, PyDoc_STR("the Packed of a principal id, or None")},
    {"pop", (PyCFunction)map_pop, METH_O, PyDoc_STR("forget a principal id's Packed")},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods map_as_sequence = {
    .sq_length = (lenfunc)map_length,
};

static PyTypeObject PackedMapType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pimlico.domain._decide.PackedMap",
    .tp_doc = PyDoc_STR("principal id -> Packed, for the Decider"),
    .tp_basicsize = sizeof(PackedMap),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = map_new,
    .tp_dealloc = (destructor)map_dealloc,
    .tp_methods = map_methods,
    .tp_as_sequence = &map_as_sequence,
};

/* -- the walk -------------------------------------------------------------------------- */

typedef struct {
    PyObject *grant;   /* borrowed, like everything here */
    PyObject *pattern;
    PyObject *holder;  /* NULL: the principal itself */
    PyObject *path;    /* NULL: held directly */
} Found;

/* The first grant, in the pure engine's order, that applies: the principal's own grants of
 * a pattern, then its groups' (each along the first path in force), pattern by pattern. */
static int
walk(const Packed *packed, PyObject *patterns, PyObject *scopes, double t, Found *found)
{
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(patterns); i++) {
        PyObject *pattern = PyTuple_GET_ITEM(patterns, i);
        const Slot *slot = find_slot(packed, pattern);
        if (slot == NULL) {
            continue;
        }
        const Own *own = (const Own *)&packed->cells[slot->first];
        for (uint16_t j = 0; j < slot->own; j++, own++) { /* the principal's own grants */
            if (covered(own->scope, scopes) && own->start <= t && t < own->end) {
                found->grant = own->grant;
                found->pattern = pattern;
                found->holder = NULL;
                found->path = NULL;
                return FOUND;
            }
        }
        const Cell *group = &packed->cells[slot->first + (uint32_t)slot->own * OWN_CELLS];
        for (uint16_t j = 0; j < slot->groups; j++, group++) { /* its groups' */
            const Holder *holder = &packed->holders[group->holder];
            PyObject *grants = PyDict_GetItemWithError(holder->held, pattern);
            if (grants == NULL) { /* the group no longer holds it */
                if (PyErr_Occurred()) {
                    return FAILED;
                }
                continue;
            }
            if (!PyTuple_CheckExact(grants)) {
                return FALLBACK;
            }
            for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(grants); k++) {
                PyObject *grant = PyTuple_GET_ITEM(grants, k);
                if (!PyTuple_CheckExact(grant) || PyTuple_GET_SIZE(grant) < 5) {
                    return FALLBACK;
                }
                if (!covered(PyTuple_GET_ITEM(grant, 0), scopes)) {
                    continue;
                }
                int r = window_holds(grant, t);
                if (r < 0) {
                    return r;
                }
                if (r == NOT_FOUND) {
                    continue;
                }
                const PathWindow *window = &packed->paths[holder->first_path];
                for (Py_ssize_t p = 0; p < holder->paths; p++, window++) {
                    if (window->start <= t && t < window->end) {
                        found->grant = grant;
                        found->pattern = pattern;
                        found->holder = holder->id;
                        found->path = window->path;
                        return FOUND;
                    }
                }
            }
        }
    }
    return NOT_FOUND;
}

/* -- building the answer ----------------------------------------------------------------- */

static inline void
put(PyObject *obj, Py_ssize_t offset, PyObject *value)
{
    *(PyObject **)((char *)obj + offset) = Py_NewRef(value);
}

/* A new instance of a __slots__ class with every slot set, as object.__new__ and setattr
 * would make it (the pure engine builds its Grant that way too). */
static PyObject *
new_slotted(PyTypeObject *type, const Py_ssize_t *offsets, PyObject *const *values, int n)
{
    PyObject *obj = type->tp_alloc(type, 0);
    if (obj == NULL) {
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        put(obj, offsets[i], values[i]);
    }
    return obj;
}

static PyObject *
answer(Decider *self, PyObject *const *args, int allowed, const Found *found)
{
    PyObject *grant = Py_None;
    if (allowed) {
        PyObject *values[G_N] = {
            found->grant,
            found->pattern,
            found->holder != NULL ? found->holder : args[0],
            found->path != NULL ? found->path : Py_None,
        };
        grant = new_slotted(self->grant_type, self->grant_offsets, values, G_N);
        if (grant == NULL) {
            return NULL;
        }
    }
    PyObject *revision = PyObject_GetAttr(self->index, str_revision);
    if (revision == NULL) {
        if (allowed) {
            Py_DECREF(grant);
        }
        return NULL;
    }
    PyObject *values[D_N] = {
        allowed ? Py_True : Py_False,
        args[0],
        args[1],
        args[2],
        args[3],
        allowed ? self->granted : self->denied,
        grant,
        revision,
    };
    PyObject *decision = new_slotted(self->decision_type, self->decision_offsets, values, D_N);
    Py_DECREF(revision);
    if (allowed) {
        Py_DECREF(grant);
    }
    return decision;
}

/* ``fn(key)``, remembered in ``cache`` (a new reference). */
static PyObject *
cached(PyObject *cache, PyObject *fn, PyObject *key)
{
    PyObject *value = PyDict_GetItemWithError(cache, key);
    if (value != NULL) {
        return Py_NewRef(value);
    }
    if (PyErr_Occurred()) {
        return NULL;
    }
    value = PyObject_CallOneArg(fn, key);
    if (value == NULL) {
        return NULL;
    }
    if (PyDict_GET_SIZE(cache) >= CACHE_MAX) {
        PyDict_Clear(cache);
    }
    if (PyDict_SetItem(cache, key, value) < 0) {
        Py_DECREF(value);
        return NULL;
    }
    return value;
}

static PyObject *
decider_call(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Decider *self = (Decider *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 4 || kwnames != NULL || !PyUnicode_CheckExact(args[0]) ||
        !PyUnicode_CheckExact(args[1]) || !PyUnicode_CheckExact(args[2])) {
        return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
    }
    double t;
    if (timestamp_of(args[3], &t) < 0) {
        return NULL;
    }
    Py_hash_t hash = PyObject_Hash(args[0]);
    if (hash == -1 || PyUnicode_READY(args[0]) < 0) {
        return NULL;
    }
    PyObject *packed = (PyObject *)map_slot((PackedMap *)self->packed, args[0], hash)->packed;
    if (packed == NULL || !((Packed *)packed)->enabled) {
        /* Unknown, a group asked about directly, or disabled: the pure engine says which. */
        return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
    }
    Py_INCREF(packed);
    PyObject *patterns = cached(self->perm_cache, self->candidates, args[1]);
    PyObject *scopes = patterns == NULL ? NULL : cached(self->scope_cache, self->ancestors, args[2]);
    PyObject *result = NULL;
    if (scopes != NULL) {
        if (!PyTuple_CheckExact(patterns) || !PyTuple_CheckExact(scopes)) {
            result = PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
        }
        else {
            Found found;
            int r = walk((Packed *)packed, patterns, scopes, t, &found);
            if (r == FALLBACK) {
                result = PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
            }
            else if (r == NOT_FOUND) {
                result = answer(self, args, 0, &found);
            }
            else if (r == FOUND) {
                /* Building the answer allocates, which may collect garbage, run Python code
                 * and let a writer replace a group's grants: hold what was found first. */
                Py_INCREF(found.grant);
                Py_XINCREF(found.holder);
                Py_XINCREF(found.path);
                result = answer(self, args, 1, &found);
                Py_DECREF(found.grant);
                Py_XDECREF(found.holder);
                Py_XDECREF(found.path);
            }
        }
    }
    Py_XDECREF(scopes);
    Py_XDECREF(patterns);
    Py_DECREF(packed);
    return result;
}

/* -- the type ---------------------------------------------------------------------------- */

/* The offset of slot ``name`` of ``type``, checked to be an object slot of that very type. */
static int
slot_offset(PyTypeObject *type, const char *name, Py_ssize_t *offset)
{
    PyObject *descr = PyDict_GetItemString(type->tp_dict, name);
    if (descr == NULL || !Py_IS_TYPE(descr, &PyMemberDescr_Type) ||
        PyDescr_TYPE(descr) != type) {
        PyErr_Format(PyExc_TypeError, "%s.%s is not a slot", type->tp_name, name);
        return -1;
    }
    PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
    if (member->type != T_OBJECT_EX || (member->flags & READONLY)) {
        PyErr_Format(PyExc_TypeError, "%s.%s is not a writable object slot", type->tp_name, name);
        return -1;
    }
    *offset = member->offset;
    return 0;
}

static int
slot_offsets(PyTypeObject *type, const char **names, int n, Py_ssize_t *offsets)
{
    if (type->tp_dictoffset != 0 || type->tp_alloc == NULL) {
        PyErr_Format(PyExc_TypeError, "%s must be a __slots__ class", type->tp_name);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        if (slot_offset(type, names[i], &offsets[i]) < 0) {
            return -1;
        }
    }
    return 0;
}

static PyObject *
decider_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"index", "packed", "fallback", "ancestors", "candidates",
                            "decision_type", "grant_type", "granted", "denied", NULL};
    PyObject *index, *packed, *fallback, *ancestors, *candidates, *granted, *denied;
    PyTypeObject *decision_type, *grant_type;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO!OOOO!O!UU:Decider", names, &index,
                                     &PackedMapType, &packed, &fallback, &ancestors, &candidates,
                                     &PyType_Type, &decision_type, &PyType_Type, &grant_type,
                                     &granted, &denied)) {
        return NULL;
    }
    Decider *self = (Decider *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = decider_call;
    self->index = Py_NewRef(index);
    self->packed = Py_NewRef(packed);
    self->fallback = Py_NewRef(fallback);
    self->ancestors = Py_NewRef(ancestors);
    self->candidates = Py_NewRef(candidates);
    self->granted = Py_NewRef(granted);
    self->denied = Py_NewRef(denied);
    self->decision_type = (PyTypeObject *)Py_NewRef(decision_type);
    self->grant_type = (PyTypeObject *)Py_NewRef(grant_type);
    self->scope_cache = PyDict_New();
    self->perm_cache = PyDict_New();
    if (self->scope_cache == NULL || self->perm_cache == NULL ||
        slot_offsets(decision_type, decision_fields, D_N, self->decision_offsets) < 0 ||
        slot_offsets(grant_type, grant_fields, G_N, self->grant_offsets) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int
decider_traverse(Decider *self, visitproc visit, void *arg)
{
    Py_VISIT(self->index);
    Py_VISIT(self->packed);
    Py_VISIT(self->fallback);
    Py_VISIT(self->ancestors);
    Py_VISIT(self->candidates);
    Py_VISIT(self->scope_cache);
    Py_VISIT(self->perm_cache);
    Py_VISIT(self->granted);
    Py_VISIT(self->denied);
    Py_VISIT(self->decision_type);
    Py_VISIT(self->grant_type);
    return 0;
}

static int
decider_clear(Decider *self)
{
    Py_CLEAR(self->index);
    Py_CLEAR(self->packed);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->ancestors);
    Py_CLEAR(self->candidates);
    Py_CLEAR(self->scope_cache);
    Py_CLEAR(self->perm_cache);
    Py_CLEAR(self->granted);
    Py_CLEAR(self->denied);
    Py_CLEAR(self->decision_type);
    Py_CLEAR(self->grant_type);
    return 0;
}

static void
decider_dealloc(Decider *self)
{
    PyObject_GC_UnTrack(self);
    decider_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject DeciderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pimlico.domain._decide.Decider",
    .tp_doc = PyDoc_STR("decide(principal_id, permission, scope, at) over a DecisionIndex, in C"),
    .tp_basicsize = sizeof(Decider),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = decider_new,
    .tp_dealloc = (destructor)decider_dealloc,
    .tp_traverse = (traverseproc)decider_traverse,
    .tp_clear = (inquiry)decider_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Decider, vectorcall),
};

static PyObject *
module_timestamp(PyObject *Py_UNUSED(module), PyObject *at)
{
    double t;
    if (timestamp_of(at, &t) < 0) {
        return NULL;
    }
    return PyFloat_FromDouble(t);
}

static PyMethodDef module_methods[] = {
    {"pack", (PyCFunction)(void (*)(void))module_pack, METH_FASTCALL,
     PyDoc_STR("a principal's view, packed for the Decider (None: not a view it knows)")},
    {"timestamp", (PyCFunction)module_timestamp, METH_O,
     PyDoc_STR("at.timestamp(), as the Decider works it out")},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pimlico.domain._decide",
    .m_doc = PyDoc_STR("The decision index's hot path in C (optional; see decisions.py)."),
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__decide(void)
{
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) {
        return NULL;
    }
    str_revision = PyUnicode_InternFromString("revision");
    str_timestamp = PyUnicode_InternFromString("timestamp");
    if (str_revision == NULL || str_timestamp == NULL || PyType_Ready(&DeciderType) < 0 ||
        PyType_Ready(&PackedType) < 0 || PyType_Ready(&PackedMapType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "Decider", (PyObject *)&DeciderType) < 0 ||
        PyModule_AddObjectRef(module, "PackedMap", (PyObject *)&PackedMapType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}

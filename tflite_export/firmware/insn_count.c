/* QEMU TCG plugin: counts guest instructions between two marker functions.
 *
 * Arguments: begin=<address>, end=<address>, out=<file>. Every time the guest
 * executes the instruction at `begin` the running count is noted; at `end`,
 * the instructions since the last `begin` are appended to the list written to
 * `out` (one number per line) when QEMU exits. Counting is per translated
 * block (one inline add per block executed), which is exact for straight-line
 * blocks and repeatable from run to run.
 *
 * Built by tflite_export.firmware with the host C compiler. It uses QEMU's
 * plugin API version 1 (QEMU 4.2 to 8.1); a system <qemu/qemu-plugin.h> is
 * preferred when one is installed.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__has_include) && __has_include(<qemu/qemu-plugin.h>)
#include <qemu/qemu-plugin.h>
#else
/* The few declarations of QEMU's plugin API (version 1) this file calls. */
typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
typedef struct qemu_info_t qemu_info_t;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int, void *);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t, void *);
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t, struct qemu_plugin_tb *);
#define QEMU_PLUGIN_EXPORT __attribute__((visibility("default")))
#define QEMU_PLUGIN_VERSION 1
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t, qemu_plugin_vcpu_tb_trans_cb_t);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *, enum qemu_plugin_op,
                                              void *, uint64_t);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *,
                                            qemu_plugin_vcpu_udata_cb_t,
                                            enum qemu_plugin_cb_flags, void *);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t, qemu_plugin_udata_cb_t, void *);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *, size_t);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *);
#endif

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

#define MAX_SPANS 4096

static uint64_t executed;   /* instructions so far (single vCPU) */
static uint64_t begin_addr, end_addr, started;
static int open_span;
static uint64_t spans[MAX_SPANS];
static size_t span_count;
static char out_path[4096];

static void on_begin(unsigned int vcpu, void *udata) {
    (void)vcpu; (void)udata;
    started = executed;
    open_span = 1;
}

static void on_end(unsigned int vcpu, void *udata) {
    (void)vcpu; (void)udata;
    if (open_span && span_count < MAX_SPANS) spans[span_count++] = executed - started;
    open_span = 0;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &executed, n);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint64_t addr = qemu_plugin_insn_vaddr(insn);
        if (addr == begin_addr) {
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_begin, QEMU_PLUGIN_CB_NO_REGS, NULL);
        } else if (addr == end_addr) {
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_end, QEMU_PLUGIN_CB_NO_REGS, NULL);
        }
    }
}

static void write_counts(qemu_plugin_id_t id, void *udata) {
    (void)id; (void)udata;
    FILE *f = fopen(out_path, "w");
    if (!f) return;
    for (size_t i = 0; i < span_count; i++) fprintf(f, "%" PRIu64 "\n", spans[i]);
    fprintf(f, "total %" PRIu64 "\n", executed);
    fclose(f);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                           int argc, char **argv) {
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "begin=", 6) == 0) {
            begin_addr = strtoull(argv[i] + 6, NULL, 0);
        } else if (strncmp(argv[i], "end=", 4) == 0) {
            end_addr = strtoull(argv[i] + 4, NULL, 0);
        } else if (strncmp(argv[i], "out=", 4) == 0) {
            snprintf(out_path, sizeof out_path, "%s", argv[i] + 4);
        } else {
            fprintf(stderr, "insn_count: unknown argument %s\n", argv[i]);
            return -1;
        }
    }
    if (!begin_addr || !end_addr || !out_path[0]) {
        fprintf(stderr, "insn_count: give begin=, end= and out=\n");
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, write_counts, NULL);
    return 0;
}

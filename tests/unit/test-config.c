/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Tests for the configuration parser: every key's good and bad values, duplicate and unknown
 * keys at every level, document-level garbage (NUL, trailing text, depth and size bombs),
 * option smuggling, and each forbidden extra_args spelling. Every failure is checked by the
 * start of its message, which must name the field.
 *
 * Documents are written with ' for " (expand() swaps them) and @D@ for a private directory
 * holding the files the paths point to: a fake qemu-system-x86_64 (PATH is set to its
 * directory, so the tests never depend on QEMU being installed), a kernel, an initrd, disks.
 */
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "test-support.h"
#include "util.h"

#ifndef QDM_TEST_CONFIGS_DIR
#error "QDM_TEST_CONFIGS_DIR must name tests/unit/configs"
#endif

static char *test_dir; /* @D@ */
static char *saved_path;
static char *bin_path; /* @D@/bin, the PATH while testing */

/* ---- fixture ------------------------------------------------------------------------------ */

static void write_file(const char *name, const char *content, mode_t mode)
{
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int fd = -1;

        assert_true(asprintf(&path, "%s/%s", test_dir, name) > 0);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
        assert_int_equal(fchmod(fd, mode), 0);
}

static void make_dir(const char *name)
{
        _cleanup_free_ char *path = NULL;

        assert_true(asprintf(&path, "%s/%s", test_dir, name) > 0);
        assert_int_equal(mkdir(path, 0755), 0);
}

static int setup(void **state)
{
        const char *path = getenv("PATH");

        test_dir = test_mkdtemp("config");
        assert_non_null(test_dir);
        /* The directory appears inside JSON strings and QEMU option values. */
        assert_null(strpbrk(test_dir, ",\"\\"));
        make_dir("bin");
        make_dir("empty-bin");
        make_dir("dir");
        write_file("bin/qemu-system-x86_64", "#!/bin/sh\nexit 1\n", 0755);
        write_file("bin/qemu-custom", "#!/bin/sh\nexit 1\n", 0755);
        write_file("bin/not-executable", "", 0644);
        write_file("vmlinuz", "kernel", 0644);
        write_file("initrd.img", "initrd", 0644);
        write_file("root.raw", "", 0644);
        write_file("data.qcow2", "", 0644);
        write_file("with,comma", "", 0644);

        saved_path = path ? strdup(path) : NULL;
        assert_true(asprintf(&bin_path, "%s/bin", test_dir) > 0);
        assert_int_equal(setenv("PATH", bin_path, 1), 0);
        return 0;
}

static int teardown(void **state)
{
        if (saved_path)
                setenv("PATH", saved_path, 1);
        else
                unsetenv("PATH");
        free(saved_path);
        free(bin_path);
        test_rm_rf(test_dir);
        free(test_dir);
        return 0;
}

/* ---- helpers ------------------------------------------------------------------------------ */

/* ' -> " (unless keep_quotes), @D@ -> the test directory. */
static char *expand_text(const char *tmpl, bool keep_quotes)
{
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);

        assert_non_null(f);
        for (const char *p = tmpl; *p; p++) {
                if (strncmp(p, "@D@", 3) == 0) {
                        fputs(test_dir, f);
                        p += 2;
                } else
                        fputc(*p == '\'' && !keep_quotes ? '"' : *p, f);
        }
        assert_int_equal(fclose(f), 0);
        return buf;
}

static char *expand(const char *tmpl)
{
        return expand_text(tmpl, false);
}

static qdm_config *parse_ok_raw(const char *text, size_t len)
{
        _cleanup_free_ char *error = NULL;
        qdm_config *c = NULL;
        int r;

        r = qdm_config_new_from_json(text, len, &c, &error);
        if (r != 0)
                fail_msg("unexpected error %d \"%s\" for:\n%s", r, error ? error : "(none)", text);
        assert_null(error); /* untouched on success */
        assert_non_null(c);
        return c;
}

static qdm_config *parse_ok(const char *tmpl)
{
        _cleanup_free_ char *text = expand(tmpl);

        return parse_ok_raw(text, strlen(text));
}

static void expect_error_raw(const char *text, size_t len, int error, const char *prefix)
{
        _cleanup_free_ char *message = NULL;
        qdm_config *c = NULL;
        int r;

        r = qdm_config_new_from_json(text, len, &c, &message);
        if (r != error)
                fail_msg("expected %d, got %d (\"%s\") for:\n%.*s", error, r,
                         message ? message : "(none)", (int)(len < 400 ? len : 400), text);
        assert_null(c);
        assert_non_null(message);
        if (strncmp(message, prefix, strlen(prefix)) != 0)
                fail_msg("message \"%s\"\n  does not start with \"%s\"\n  for: %.*s", message,
                         prefix, (int)(len < 400 ? len : 400), text);
        /* No message wanted: same result, nothing allocated. */
        assert_int_equal(qdm_config_new_from_json(text, len, &c, NULL), error);
        assert_null(c);
}

static void expect_error(const char *tmpl, const char *prefix)
{
        _cleanup_free_ char *text = expand(tmpl);
        _cleanup_free_ char *full_prefix = expand_text(prefix, true);

        expect_error_raw(text, strlen(text), -EINVAL, full_prefix);
}

typedef struct bad_case {
        const char *json;   /* template: ' for ", @D@ for the test directory */
        const char *prefix; /* the message starts with this (also expanded) */
} bad_case;

static void run_bad_cases(const bad_case *cases, size_t n)
{
        for (size_t i = 0; i < n; i++)
                expect_error(cases[i].json, cases[i].prefix);
}

static char *repeat(char c, size_t n)
{
        char *s = malloc(n + 1);

        assert_non_null(s);
        memset(s, c, n);
        s[n] = '\0';
        return s;
}

/* ---- good documents ---------------------------------------------------------------------- */

static void test_defaults(void **state)
{
        qdm_config *c = parse_ok("{'name':'vm0'}");
        const qdm_model *m = qdm_config_model(c);
        _cleanup_free_ char *qemu = expand("@D@/bin/qemu-system-x86_64");

        assert_string_equal(qdm_config_get_name(c), "vm0");
        assert_string_equal(m->name, "vm0");
        assert_string_equal(m->qemu, qemu);
        assert_string_equal(m->machine, "none");
        assert_int_equal(m->accel, QDM_ACCEL_AUTO);
        assert_int_equal(m->memory_mib, 0);
        assert_int_equal(m->vcpus, 0);
        assert_null(m->kernel);
        assert_null(m->initrd);
        assert_null(m->append);
        assert_int_equal(m->n_disks, 0);
        assert_int_equal(m->restrict_.mode, QDM_RESTRICT_JAIL);
        assert_int_equal(m->restrict_.uid_min, 64000);
        assert_int_equal(m->restrict_.uid_max, 64999);
        assert_false(m->restrict_.share_uid);
        assert_false(m->restrict_.unshare_net);
        assert_false(m->restrict_.unshare_pid);
        assert_int_equal(m->restrict_.rlimits.fsize, 262144);
        assert_int_equal(m->restrict_.rlimits.core, 0);
        assert_int_equal(m->restrict_.rlimits.msgqueue, 0);
        assert_int_equal(m->restrict_.rlimits.locks, 0);
        assert_int_equal(m->restrict_.rlimits.memlock, 0);
        assert_true(m->restrict_.rlimits.nofile == RLIM_INFINITY);
        assert_int_equal(m->start_timeout_ms, 60000);
        assert_int_equal(m->n_extra_args, 0);
        qdm_config_free(c);
}

static void test_every_key(void **state)
{
        qdm_config *c = parse_ok("{'name':'Vm_0.a-b','qemu':'@D@/bin/qemu-custom',"
                                 "'machine':'pc-q35-7.2','accel':'kvm','memory_mib':1048576,"
                                 "'vcpus':288,'kernel':'@D@/vmlinuz','initrd':'@D@/initrd.img',"
                                 "'append':'console=ttyS0,115200 root=/dev/vda caf\\u00e9',"
                                 "'disks':[{'path':'@D@/root.raw'},"
                                 "{'path':'@D@/data.qcow2','format':'qcow2','readonly':true},"
                                 "{'path':'@D@/root.raw','format':'raw','readonly':false}],"
                                 "'restrict':{'mode':'jail','uid_min':1,'uid_max':4294967294,"
                                 "'share_uid':true,'namespaces':{'net':true,'pid':true},"
                                 "'rlimits':{'fsize':'unlimited','core':1,'msgqueue':2,"
                                 "'locks':3,'memlock':18446744073709551614,'nofile':1024}},"
                                 "'start_timeout_ms':3600000,"
                                 "'extra_args':['-device','virtio-rng-pci','-global','a.b=c']}");
        const qdm_model *m = qdm_config_model(c);
        _cleanup_free_ char *qemu = expand("@D@/bin/qemu-custom");
        _cleanup_free_ char *kernel = expand("@D@/vmlinuz");
        _cleanup_free_ char *initrd = expand("@D@/initrd.img");
        _cleanup_free_ char *raw = expand("@D@/root.raw");
        _cleanup_free_ char *qcow2 = expand("@D@/data.qcow2");

        assert_string_equal(m->name, "Vm_0.a-b");
        assert_string_equal(m->qemu, qemu);
        assert_string_equal(m->machine, "pc-q35-7.2");
        assert_int_equal(m->accel, QDM_ACCEL_KVM);
        assert_int_equal(m->memory_mib, 1048576);
        assert_int_equal(m->vcpus, 288);
        assert_string_equal(m->kernel, kernel);
        assert_string_equal(m->initrd, initrd);
        assert_string_equal(m->append, "console=ttyS0,115200 root=/dev/vda caf\xc3\xa9");
        assert_int_equal(m->n_disks, 3);
        assert_string_equal(m->disks[0].path, raw);
        assert_string_equal(m->disks[0].format, "raw");
        assert_false(m->disks[0].readonly);
        assert_false(m->disks[0].block_device);
        assert_string_equal(m->disks[1].path, qcow2);
        assert_string_equal(m->disks[1].format, "qcow2");
        assert_true(m->disks[1].readonly);
        assert_string_equal(m->disks[2].format, "raw");
        assert_false(m->disks[2].readonly);
        assert_int_equal(m->restrict_.mode, QDM_RESTRICT_JAIL);
        assert_int_equal(m->restrict_.uid_min, 1);
        assert_int_equal(m->restrict_.uid_max, 4294967294u);
        assert_true(m->restrict_.share_uid);
        assert_true(m->restrict_.unshare_net);
        assert_true(m->restrict_.unshare_pid);
        assert_true(m->restrict_.rlimits.fsize == RLIM_INFINITY);
        assert_int_equal(m->restrict_.rlimits.core, 1);
        assert_int_equal(m->restrict_.rlimits.msgqueue, 2);
        assert_int_equal(m->restrict_.rlimits.locks, 3);
        assert_true(m->restrict_.rlimits.memlock == UINT64_C(18446744073709551614));
        assert_int_equal(m->restrict_.rlimits.nofile, 1024);
        assert_int_equal(m->start_timeout_ms, 3600000);
        assert_int_equal(m->n_extra_args, 4);
        assert_string_equal(m->extra_args[0], "-device");
        assert_string_equal(m->extra_args[3], "a.b=c");
        assert_null(m->extra_args[4]);
        qdm_config_free(c);
}

static void test_good_values(void **state)
{
        static const char *const good[] = {
                /* name */
                "{'name':'a'}",
                "{'name':'vm.'}",
                "{'name':'-x'}",
                "{'name':'0123456789012345678901234567890123456789012345678901234567890123'}",
                /* an escaped key is the same key */
                "{'na\\u006de':'vm0'}",
                "{'name':'vm\\u0030'}",
                /* qemu: a name looked up in PATH, or absolute */
                "{'name':'a','qemu':'qemu-custom'}",
                "{'name':'a','qemu':'@D@/bin/qemu-system-x86_64'}",
                /* machine */
                "{'name':'a','machine':'q35'}",
                "{'name':'a','machine':'pc'}",
                "{'name':'a','machine':'microvm'}",
                "{'name':'a','machine':'none'}",
                /* accel */
                "{'name':'a','accel':'auto'}",
                "{'name':'a','accel':'tcg'}",
                /* numbers at their bounds; 0 memory means QEMU's default; -0 is 0 */
                "{'name':'a','memory_mib':0}",
                "{'name':'a','memory_mib':-0}",
                "{'name':'a','memory_mib':1}",
                "{'name':'a','vcpus':1}",
                "{'name':'a','start_timeout_ms':1}",
                "{'name':'a','restrict':{'uid_min':4294967294,'uid_max':4294967294}}",
                "{'name':'a','restrict':{'uid_min':1,'uid_max':1}}",
                "{'name':'a','restrict':{'rlimits':{'nofile':'unlimited','core':0}}}",
                "{'name':'a','restrict':{'rlimits':{'fsize':9223372036854775807}}}",
                /* namespaces false are fine in every mode */
                "{'name':'a','restrict':{'mode':'qemu','namespaces':{'net':false,'pid':false}}}",
                "{'name':'a','restrict':{'namespaces':{}}}",
                /* and true ones in the default mode, jail */
                "{'name':'a','restrict':{'namespaces':{'net':true,'pid':true}}}",
                "{'name':'a','restrict':{'mode':'none'}}",
                "{'name':'a','restrict':{}}",
                /* kernel alone; kernel with append (commas are fine in -append); empty append */
                "{'name':'a','kernel':'@D@/vmlinuz'}",
                "{'name':'a','kernel':'@D@/vmlinuz','append':''}",
                "{'name':'a','append':'console=ttyS0,115200','kernel':'@D@/vmlinuz'}",
                "{'name':'a','initrd':'@D@/initrd.img','kernel':'@D@/vmlinuz'}",
                /* disks */
                "{'name':'a','disks':[]}",
                "{'name':'a','disks':[{'readonly':true,'path':'@D@/root.raw'}]}",
                /* extra_args that are always allowed */
                "{'name':'a','extra_args':[]}",
                "{'name':'a','extra_args':['-global','kvm-pit.lost_tick_policy=discard']}",
                "{'name':'a','extra_args':['-add-fd','fd=5,set=1','-incoming','defer']}",
                "{'name':'a','extra_args':['-enable-kvm','-device','virtio-rng-pci']}",
                "{'name':'a','extra_args':['-object','rng-random,id=rng0,filename=/dev/urandom']}",
                /* extra_args refused only when restricted, with mode "none" (in any order) */
                "{'name':'a','restrict':{'mode':'none'},'extra_args':['-sandbox','on']}",
                "{'name':'a','extra_args':['-runas','1:1','-chroot','/x','-run-with','user=1'],"
                "'restrict':{'mode':'none'}}",
                "{'name':'a','extra_args':['-chardev','null,id=c0','--writeconfig','/tmp/x'],"
                "'restrict':{'mode':'none'}}",
                /* white space, CRLF, and a value that looks like a key */
                " \r\n\t{ 'name' : 'a' ,\r\n 'machine' : 'q35' } \r\n\t",
                "{'name':'a','restrict':{'mode':'none'},'extra_args':['name','name','-']}",
                /* the same key in sibling and nested objects is no duplicate */
                "{'name':'a','disks':[{'path':'@D@/root.raw'},{'path':'@D@/root.raw'}]}",
        };

        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                qdm_config_free(parse_ok(good[i]));
}

/* ---- document-level errors --------------------------------------------------------------- */

static void test_document(void **state)
{
        static const bad_case cases[] = {
                {"", "document: empty"},
                {" \n\t\r ", "document: empty"},
                {"[]", "document: expected an object, got array"},
                {"'vm0'", "document: expected an object, got string"},
                {"1", "document: expected an object, got integer"},
                {"null", "document: expected an object, got null"},
                {"{'name':'a'} x",
                 "document: invalid JSON at line 1, column 14: unexpected character"},
                {"{'name':'a'}\n\n  }", "document: invalid JSON at line 3, column 3: "},
                {"{'name':'a'}{}", "document: invalid JSON at line 1, column 13: "},
                {"{'name':'a'", "document: invalid JSON: unexpected end of input"},
                {"{'name':'a',}", "document: invalid JSON at line 1, column 13: "},
                {"/* c */ {'name':'a'}", "document: invalid JSON at line 1, column 1: "},
                {"{'name':'a'} // c", "document: invalid JSON at line 1, column 14: "},
                {"{'name':'a','vcpus':01}", "document: invalid JSON at line 1, column "},
                {"{'name':'a','vcpus':+1}", "document: invalid JSON at line 1, column "},
                {"{'name':'\\x'}", "document: invalid JSON at line 1, column "},
                {"{name:'a'}", "document: invalid JSON at line 1, column 2: "},
                {"\xef\xbb\xbf{'name':'a'}", "document: invalid JSON at line 1, column 1: "},
                {"{'name':'a\xff'}", "document: invalid utf-8 at line 1, column 11"},
                /* json-c 0.16 lets these through: overlong '/', a surrogate, above U+10FFFF */
                {"{'name':'a','append':'\xc0\xaf'}",
                 "document: invalid utf-8 at line 1, column 23"},
                {"{'name':'a','append':'\xed\xa0\x80'}", "document: invalid utf-8 at line 1"},
                {"{'name':'a','append':'\xf4\x90\x80\x80'}", "document: invalid utf-8 at line 1"},
                /* json-c lets these through; the scanner does not */
                {"{'name':'a\x01'}", "document: invalid JSON at line 1, column 11: control"},
                {"{'name':'a\tb'}", "document: invalid JSON at line 1, column 11: control"},
                /* json-c accepts NaN as a number; no field takes one */
                {"{'name':'a','memory_mib':NaN}",
                 "memory_mib: expected an integer, got floating-point number"},
        };

        run_bad_cases(cases, ELEMENTSOF(cases));
        /* json-c takes single-quoted keys even in strict mode (not values). */
        expect_error_raw("{'name':\"a\"}", 12, -EINVAL,
                         "document: invalid JSON at line 1, column 2: single-quoted string");
        expect_error_raw("{\"name\":'a'}", 12, -EINVAL,
                         "document: invalid JSON at line 1, column 9: unexpected character");
}

static void test_nul(void **state)
{
        static const char doc[] = "{\"name\":\"a\"}";
        char buf[64];

        /* A NUL anywhere in the text, even after a complete document. */
        memcpy(buf, doc, sizeof(doc)); /* includes the terminating NUL */
        expect_error_raw(buf, sizeof(doc), -EINVAL, "document: NUL byte at offset 12");
        buf[9] = '\0';
        expect_error_raw(buf, strlen(doc), -EINVAL, "document: NUL byte at offset 9");
        expect_error_raw("\0", 1, -EINVAL, "document: NUL byte at offset 0");
        /* Escaped NUL: in a value it is refused by the field, in a key by the scanner. */
        expect_error("{'name':'a\\u0000b'}", "name: must not contain a NUL character");
        expect_error("{'name':'a','extra_args':['-S\\u0000x']}",
                     "extra_args[0]: must not contain a NUL character");
        expect_error("{'name\\u0000x':'a'}", "document: a key must not contain \\u0000");
        expect_error("{'name':'a','restrict':{'mode\\u0000':'x'}}",
                     "restrict: a key must not contain \\u0000");
}

static void test_depth_bomb(void **state)
{
        char *text = NULL;
        size_t size = 0;
        FILE *f;

        /* Arrays, deeper than the limit, inside a known key. */
        f = open_memstream(&text, &size);
        assert_non_null(f);
        fputs("{\"name\":\"a\",\"extra_args\":", f);
        for (int i = 0; i < 10000; i++)
                fputc('[', f);
        assert_int_equal(fclose(f), 0);
        expect_error_raw(text, size, -EINVAL, "document: nested deeper than 32");
        free(text);

        /* Objects, exactly at the limit, are parsed (and refused by the schema). */
        text = NULL;
        f = open_memstream(&text, &size);
        assert_non_null(f);
        for (int i = 0; i < 32; i++)
                fputs("{\"a\":", f);
        fputs("1", f);
        for (int i = 0; i < 32; i++)
                fputc('}', f);
        assert_int_equal(fclose(f), 0);
        expect_error_raw(text, size, -EINVAL, "a: unknown key");
        free(text);

        /* One more level is too deep. */
        text = NULL;
        f = open_memstream(&text, &size);
        assert_non_null(f);
        for (int i = 0; i < 33; i++)
                fputs("{\"a\":", f);
        fputs("1", f);
        for (int i = 0; i < 33; i++)
                fputc('}', f);
        assert_int_equal(fclose(f), 0);
        expect_error_raw(text, size, -EINVAL, "document: nested deeper than 32");
        free(text);
}

static void test_size_bomb(void **state)
{
        const size_t max = QDM_CONFIG_MAX_SIZE;
        char *text = malloc(max + 2);
        const char doc[] = "{\"name\":\"a\"}";
        qdm_config *c = NULL;

        assert_non_null(text);
        /* Exactly 1 MiB (padded with spaces) is accepted. */
        memset(text, ' ', max + 1);
        memcpy(text, doc, strlen(doc));
        text[max + 1] = '\0';
        qdm_config_free(parse_ok_raw(text, max));
        /* One byte more is refused before parsing. */
        expect_error_raw(text, max + 1, -EFBIG, "document: larger than 1048576 bytes");
        assert_int_equal(qdm_config_new_from_json(text, max + 1, &c, NULL), -EFBIG);
        free(text);
}

static void test_many_keys(void **state)
{
        char *text = NULL;
        size_t size = 0;
        FILE *f;

        f = open_memstream(&text, &size);
        assert_non_null(f);
        fputs("{\"name\":\"a\",\"restrict\":{", f);
        for (int i = 0; i < 65; i++)
                fprintf(f, "%s\"k%d\":1", i ? "," : "", i);
        fputs("}}", f);
        assert_int_equal(fclose(f), 0);
        expect_error_raw(text, size, -EINVAL, "restrict: more than 64 keys in one object");
        free(text);

        /* A large flat document of distinct keys costs linear time and fails on the limit. */
        text = NULL;
        f = open_memstream(&text, &size);
        assert_non_null(f);
        fputc('{', f);
        for (int i = 0; i < 60000; i++)
                fprintf(f, "%s\"k%d\":1", i ? "," : "", i);
        fputc('}', f);
        assert_int_equal(fclose(f), 0);
        expect_error_raw(text, size, -EINVAL, "document: more than 64 keys in one object");
        free(text);
}

/* ---- duplicate and unknown keys ---------------------------------------------------------- */

static void test_duplicate_keys(void **state)
{
        static const bad_case cases[] = {
                {"{'name':'a','name':'b'}", "name: duplicate key"},
                {"{'name':'a','name':'a'}", "name: duplicate key"},
                {"{'name':'a','na\\u006de':'b'}", "name: duplicate key"},
                {"{'\\u006eame':'a','n\\u0061me':'b'}", "name: duplicate key"},
                {"{'name':'a','\\u006E\\u0061\\u006D\\u0065':'b'}", "name: duplicate key"},
                {"{'name':'a','restrict':{'mode':'none'},'name':'b'}", "name: duplicate key"},
                {"{'name':'a','restrict':{},'restrict':{}}", "restrict: duplicate key"},
                {"{'name':'a','restrict':{'mode':'none','mode':'qemu'}}",
                 "restrict.mode: duplicate key"},
                {"{'name':'a','restrict':{'mode':'none','m\\u006fde':'none'}}",
                 "restrict.mode: duplicate key"},
                {"{'name':'a','restrict':{'rlimits':{'core':0,'core':1}}}",
                 "restrict.rlimits.core: duplicate key"},
                {"{'name':'a','restrict':{'namespaces':{'net':true,'pid':true,'net':false}}}",
                 "restrict.namespaces.net: duplicate key"},
                {"{'name':'a','disks':[{'path':'@D@/root.raw'},"
                 "{'path':'@D@/root.raw','readonly':true,'path':'/x'}]}",
                 "disks[1].path: duplicate key"},
                {"{'name':'a','extra_args':[],'extra_args':['-S']}", "extra_args: duplicate key"},
                /* \/ is / */
                {"{'name':'a','a/b':1,'a\\/b':2}", "a/b: duplicate key"},
                /* a surrogate pair equals the raw UTF-8 of the same code point */
                {"{'\\ud83d\\ude00':1,'\xf0\x9f\x98\x80':2}", "????: duplicate key"},
                /* inside a value the schema would refuse anyway, the duplicate still counts */
                {"{'foo':{'x':1,'x':2}}", "foo.x: duplicate key"},
                /* json-c would turn unpaired surrogates into U+FFFD and make them equal */
                {"{'\\ud800':1}", "document: a key must not contain an unpaired surrogate"},
                {"{'a\\udc00':1}", "document: a key must not contain an unpaired surrogate"},
                {"{'name':'a','restrict':{'\\ud800x':1}}",
                 "restrict: a key must not contain an unpaired surrogate"},
        };

        run_bad_cases(cases, ELEMENTSOF(cases));
}

static void test_unknown_keys(void **state)
{
        static const bad_case cases[] = {
                {"{'name':'a','foo':1}", "foo: unknown key"},
                {"{'Name':'a'}", "Name: unknown key"},
                {"{'name':'a','restrict':{'Mode':'none'}}", "restrict.Mode: unknown key"},
                {"{'name':'a','restrict':{'namespaces':{'uts':true}}}",
                 "restrict.namespaces.uts: unknown key"},
                {"{'name':'a','restrict':{'rlimits':{'cpu':1}}}",
                 "restrict.rlimits.cpu: unknown key"},
                {"{'name':'a','disks':[{'path':'@D@/root.raw'},{'path':'@D@/root.raw',"
                 "'cache':'none'}]}",
                 "disks[1].cache: unknown key"},
                /* keys in messages are printable and short */
                {"{'name':'a','\\u0001x':1}", "?x: unknown key"},
                {"{'name':'a','"
                 "0123456789012345678901234567890123456789012345678901234567890123456789':1}",
                 "0123456789012345678901234567890123456789012345678901234567890123...: "
                 "unknown key"},
                /* the first offending key in document order is reported */
                {"{'zzz':1,'name':'a','aaa':2}", "zzz: unknown key"},
        };

        run_bad_cases(cases, ELEMENTSOF(cases));
}

/* ---- every key's bad values -------------------------------------------------------------- */

static void test_name(void **state)
{
        static const bad_case cases[] = {
                {"{}", "name: is required"},
                {"{'machine':'q35'}", "name: is required"},
                {"{'name':''}", "name: must be 1-64 characters of [A-Za-z0-9_.-], not starting"},
                {"{'name':'.vm'}", "name: must be 1-64 characters"},
                {"{'name':'a b'}", "name: must be 1-64 characters"},
                {"{'name':'a,b'}", "name: must be 1-64 characters"},
                {"{'name':'a=b'}", "name: must be 1-64 characters"},
                {"{'name':'a/b'}", "name: must be 1-64 characters"},
                {"{'name':'caf\\u00e9'}", "name: must be 1-64 characters"},
                {"{'name':'a\\nb'}", "name: must not contain control characters"},
                {"{'name':'a\\u007fb'}", "name: must not contain control characters"},
                {"{'name':"
                 "'01234567890123456789012345678901234567890123456789012345678901234'}",
                 "name: must be at most 64 bytes long"},
                {"{'name':1}", "name: expected a string, got integer"},
                {"{'name':null}", "name: expected a string, got null"},
                {"{'name':['a']}", "name: expected a string, got array"},
                {"{'name':{}}", "name: expected a string, got object"},
                {"{'name':true}", "name: expected a string, got boolean"},
        };

        run_bad_cases(cases, ELEMENTSOF(cases));
}

static void test_qemu(void **state)
{
        static const bad_case cases[] = {
                {"{'name':'a','qemu':''}", "qemu: must not be empty"},
                {"{'name':'a','qemu':'/nonexistent/qemu'}",
                 "qemu: /nonexistent/qemu is not an executable file"},
                {"{'name':'a','qemu':'@D@/bin/not-executable'}",
                 "qemu: @D@/bin/not-executable is not an executable file"},
                {"{'name':'a','qemu':'@D@/dir'}", "qemu: @D@/dir is not an executable file"},
                {"{'name':'a','qemu':'bin/qemu'}",
                 "qemu: must be an absolute path or a file name to look up in PATH"},
                {"{'name':'a','qemu':'./qemu-custom'}", "qemu: must be an absolute path"},
                {"{'name':'a','qemu':'qemu-nothere'}",
                 "qemu: qemu-nothere not found in PATH (set \"qemu\" to its path)"},
                {"{'name':'a','qemu':'not-executable'}", "qemu: not-executable not found"},
                {"{'name':'a','qemu':'dir'}", "qemu: dir not found in PATH"},
                {"{'name':'a','qemu':'q\\temu'}", "qemu: must not contain control characters"},
                {"{'name':'a','qemu':42}", "qemu: expected a string, got integer"},
        };
        _cleanup_free_ char *empty = expand("@D@/empty-bin");
        _cleanup_free_ char *with_relative = expand(":.:bin:@D@/empty-bin");

        run_bad_cases(cases, ELEMENTSOF(cases));

        /* The default is resolved at parse time, and its absence names the field. */
        assert_int_equal(setenv("PATH", empty, 1), 0);
        expect_error("{'name':'a'}", "qemu: qemu-system-x86_64 not found in PATH");
        /* Empty and relative PATH entries are never searched, even from the right cwd. */
        assert_int_equal(setenv("PATH", with_relative, 1), 0);
        assert_int_equal(chdir(test_dir), 0);
        expect_error("{'name':'a','qemu':'qemu-custom'}", "qemu: qemu-custom not found in PATH");
        assert_int_equal(chdir("/"), 0);
        assert_int_equal(setenv("PATH", bin_path, 1), 0);
}

static void test_machine_accel(void **state)
{
        static const bad_case cases[] = {
                {"{'name':'a','machine':''}", "machine: must be 1-64 characters of [a-z0-9_.-]"},
                {"{'name':'a','machine':'Q35'}", "machine: must be 1-64 characters"},
                {"{'name':'a','machine':'q35,accel=kvm'}", "machine: must be 1-64 characters"},
                {"{'name':'a','machine':'q35 '}", "machine: must be 1-64 characters"},
                {"{'name':'a','machine':'q=35'}", "machine: must be 1-64 characters"},
                {"{'name':'a','machine':"
                 "'01234567890123456789012345678901234567890123456789012345678901234'}",
                 "machine: must be at most 64 bytes long"},
                {"{'name':'a','machine':true}", "machine: expected a string, got boolean"},
                {"{'name':'a','accel':'hvf'}", "accel: must be \"auto\", \"kvm\" or \"tcg\""},
                {"{'name':'a','accel':'KVM'}", "accel: must be \"auto\", \"kvm\" or \"tcg\""},
                {"{'name':'a','accel':''}", "accel: must be \"auto\""},
                {"{'name':'a','accel':1}", "accel: expected a string, got integer"},
        };

        run_bad_cases(cases, ELEMENTSOF(cases));
}

static void test_numbers(void **state)
{
        static const bad_case cases[] = {
                {"{'name':'a','memory_mib':'1024'}", "memory_mib: expected an integer, got string"},
                {"{'name':'a','memory_mib':1.5}",
                 "memory_mib: expected an integer, got floating-point number"},
                {"{'name':'a','memory_mib':1e3}",
                 "memory_mib: expected an integer, got floating-point number"},
                {"{'name':'a','memory_mib':1024.0}",
                 "memory_mib: expected an integer, got floating-point number"},
                {"{'name':'a','memory_mib':-1}", "memory_mib: must be between 0 and 1048576"},
                {"{'name':'a','memory_mib':1048577}", "memory_mib: must be between 0 and"},
                {"{'name':'a','memory_mib':18446744073709551615}",
                 "memory_mib: must be between 0 and"},
                /* json-c saturates what does not fit in 64 bits */
                {"{'name':'a','memory_mib':99999999999999999999999}",
                 "memory_mib: must be between 0 and"},
                {"{'name':'a','memory_mib':-99999999999999999999999}",
                 "memory_mib: must be between 0 and"},
                {"{'name':'a','memory_mib':true}", "memory_mib: expected an integer, got boolean"},
                {"{'name':'a','vcpus':0}", "vcpus: must be between 1 and 288"},
                {"{'name':'a','vcpus':289}", "vcpus: must be between 1 and 288"},
                {"{'name':'a','vcpus':4294967297}", "vcpus: must be between 1 and 288"},
                {"{'name':'a','vcpus':'2'}", "vcpus: expected an integer, got string"},
                {"{'name':'a','vcpus':null}", "vcpus: expected an integer, got null"},
                {"{'name':'a','start_timeout_ms':0}",
                 "start_timeout_ms: must be between 1 and 3600000"},
                {"{'name':'a','start_timeout_ms':3600001}",
                 "start_timeout_ms: must be between 1 and 3600000"},
                {"{'name':'a','start_timeout_ms':'60000'}",
                 "start_timeout_ms: expected an integer, got string"},
                {"{'name':'a','start_timeout_ms':6e4}",
                 "start_timeout_ms: expected an integer, got floating-point number"},
        };

        run_bad_cases(cases, ELEMENTSOF(cases));
}

static void test_kernel(void **state)
{
        static const bad_case cases[] = {
                {"{'name':'a','kernel':'vmlinuz'}", "kernel: must be an absolute path"},
                {"{'name':'a','kernel':''}", "kernel: must be an absolute path"},
                {"{'name':'a','kernel':'@D@/nope'}", "kernel: @D@/nope does not exist"},
                {"{'name':'a','kernel':'@D@/vmlinuz/x'}", "kernel: @D@/vmlinuz/x does not exist"},
                {"{'name':'a','kernel':'@D@/dir'}", "kernel: @D@/dir is not a regular file"},
                {"{'name':'a','kernel':'/dev/null'}", "kernel: /dev/null is not a regular file"},
                {"{'name':'a','kernel':'@D@/with,comma'}",
                 "kernel: must not contain ',' (it separates QEMU option values)"},
                {"{'name':'a','kernel':'@D@/vm\\u0001linuz'}",
                 "kernel: must not contain control characters"},
                {"{'name':'a','kernel':7}", "kernel: expected a string, got integer"},
                {"{'name':'a','initrd':'@D@/initrd.img'}", "initrd: requires \"kernel\""},
                {"{'name':'a','kernel':'@D@/vmlinuz','initrd':'initrd.img'}",
                 "initrd: must be an absolute path"},
                {"{'name':'a','kernel':'@D@/vmlinuz','initrd':'@D@/with,comma'}",
                 "initrd: must not contain ','"},
                {"{'name':'a','kernel':'@D@/vmlinuz','initrd':'@D@/nope'}",
                 "initrd: @D@/nope does not exist"},
                {"{'name':'a','append':'quiet'}", "append: requires \"kernel\""},
                {"{'name':'a','kernel':'@D@/vmlinuz','append':'quiet\\tsplash'}",
                 "append: must not contain control characters"},
                {"{'name':'a','kernel':'@D@/vmlinuz','append':'quiet\\n-S'}",
                 "append: must not contain control characters"},
                {"{'name':'a','kernel':'@D@/vmlinuz','append':['quiet']}",
                 "append: expected a string, got array"},
        };
        _cleanup_free_ char *max = repeat('x', QDM_CONFIG_MAX_STRING);
        _cleanup_free_ char *good = NULL, *bad = NULL;

        run_bad_cases(cases, ELEMENTSOF(cases));
        assert_true(asprintf(&good, "{'name':'a','kernel':'@D@/vmlinuz','append':'%s'}", max) > 0);
        qdm_config_free(parse_ok(good));
        assert_true(asprintf(&bad, "{'name':'a','kernel':'@D@/vmlinuz','append':'%sx'}", max) > 0);
        expect_error(bad, "append: must be at most 4096 bytes long");
}

static void test_disks(void **state)
{
        static const bad_case cases[] = {
                {"{'name':'a','disks':{}}", "disks: expected an array, got object"},
                {"{'name':'a','disks':'@D@/root.raw'}", "disks: expected an array, got string"},
                {"{'name':'a','disks':['@D@/root.raw']}",
                 "disks[0]: expected an object, got string"},
                {"{'name':'a','disks':[{}]}", "disks[0].path: is required"},
                {"{'name':'a','disks':[{'path':'@D@/root.raw'},{'readonly':true}]}",
                 "disks[1].path: is required"},
                {"{'name':'a','disks':[{'path':'root.raw'}]}",
                 "disks[0].path: must be an absolute path"},
                {"{'name':'a','disks':[{'path':'@D@/root.raw'},{'path':'@D@/with,comma'}]}",
                 "disks[1].path: must not contain ','"},
                /* ',' is refused before the file system is asked */
                {"{'name':'a','disks':[{'path':'/x,file.driver=host_device,file.filename=/y'}]}",
                 "disks[0].path: must not contain ','"},
                {"{'name':'a','disks':[{'path':'@D@/nope'}]}",
                 "disks[0].path: @D@/nope does not exist"},
                {"{'name':'a','disks':[{'path':'@D@/dir'}]}",
                 "disks[0].path: @D@/dir is not a regular file or block device"},
                {"{'name':'a','disks':[{'path':'/dev/null'}]}",
                 "disks[0].path: /dev/null is not a regular file or block device"},
                {"{'name':'a','disks':[{'path':'@D@/root.raw','format':'vmdk'}]}",
                 "disks[0].format: must be \"raw\" or \"qcow2\""},
                {"{'name':'a','disks':[{'path':'@D@/root.raw','format':'raw,file.x=y'}]}",
                 "disks[0].format: must be \"raw\" or \"qcow2\""},
                {"{'name':'a','disks':[{'path':'@D@/root.raw','format':null}]}",
                 "disks[0].format: expected a string, got null"},
                {"{'name':'a','disks':[{'path':'@D@/root.raw','readonly':'yes'}]}",
                 "disks[0].readonly: expected a boolean, got string"},
                {"{'name':'a','disks':[{'path':'@D@/root.raw','readonly':1}]}",
                 "disks[0].readonly: expected a boolean, got integer"},
        };
        char *text = NULL;
        size_t size = 0;
        FILE *f;

        run_bad_cases(cases, ELEMENTSOF(cases));

        /* 16 disks are fine, 17 are not. */
        for (int n = 16; n <= 17; n++) {
                f = open_memstream(&text, &size);
                assert_non_null(f);
                fputs("{'name':'a','disks':[", f);
                for (int i = 0; i < n; i++)
                        fprintf(f, "%s{'path':'@D@/root.raw'}", i ? "," : "");
                fputs("]}", f);
                assert_int_equal(fclose(f), 0);
                if (n == 16) {
                        qdm_config *c = parse_ok(text);
                        assert_int_equal(qdm_config_model(c)->n_disks, 16);
                        qdm_config_free(c);
                } else
                        expect_error(text, "disks: at most 16 elements are allowed");
                free(text);
                text = NULL;
        }
}

static void test_block_device(void **state)
{
        static const char *const candidates[] = {"/dev/loop0", "/dev/sda", "/dev/vda",
                                                 "/dev/nvme0n1", "/dev/ram0"};
        _cleanup_free_ char *text = NULL;
        const char *dev = NULL;
        struct stat st;
        qdm_config *c;

        for (size_t i = 0; i < ELEMENTSOF(candidates) && !dev; i++)
                if (stat(candidates[i], &st) == 0 && S_ISBLK(st.st_mode))
                        dev = candidates[i];
        if (!dev)
                skip();
        assert_true(asprintf(&text, "{'name':'a','disks':[{'path':'%s'}]}", dev) > 0);
        c = parse_ok(text);
        assert_true(qdm_config_model(c)->disks[0].block_device);
        qdm_config_free(c);
}

/* RLIMIT_FSIZE kills a writer past that offset of a regular file: a writable file-backed disk
 * lifts the default, and an explicit limit beside one is refused. */
static void test_fsize_and_writable_disks(void **state)
{
        qdm_config *c = parse_ok("{'name':'a','disks':[{'path':'@D@/root.raw'}]}");
        assert_true(qdm_config_model(c)->restrict_.rlimits.fsize == RLIM_INFINITY);
        qdm_config_free(c);
        c = parse_ok("{'name':'a','disks':[{'path':'@D@/root.raw','readonly':true}]}");
        assert_int_equal(qdm_config_model(c)->restrict_.rlimits.fsize, 256 * 1024);
        qdm_config_free(c);
        c = parse_ok("{'name':'a','disks':[{'path':'@D@/root.raw'}],"
                     "'restrict':{'rlimits':{'fsize':'unlimited'}}}");
        assert_true(qdm_config_model(c)->restrict_.rlimits.fsize == RLIM_INFINITY);
        qdm_config_free(c);
        expect_error("{'name':'a','restrict':{'rlimits':{'fsize':262144}},"
                     "'disks':[{'path':'@D@/root.raw'}]}",
                     "restrict.rlimits.fsize: QEMU would be killed once the guest writes past "
                     "byte 262144 of disks[0]");
        /* Unrestricted, rlimits are not applied at all: nothing to refuse. */
        c = parse_ok("{'name':'a','restrict':{'mode':'none','rlimits':{'fsize':4096}},"
                     "'disks':[{'path':'@D@/root.raw'}]}");
        qdm_config_free(c);
}

static void test_restrict(void **state)
{
        static const bad_case cases[] = {
                {"{'name':'a','restrict':'qemu'}", "restrict: expected an object, got string"},
                {"{'name':'a','restrict':{'mode':'strict'}}",
                 "restrict.mode: must be \"none\", \"qemu\" or \"jail\""},
                {"{'name':'a','restrict':{'mode':null}}",
                 "restrict.mode: expected a string, got null"},
                {"{'name':'a','restrict':{'uid_min':0}}",
                 "restrict.uid_min: must be between 1 and 4294967294"},
                {"{'name':'a','restrict':{'uid_min':-1}}",
                 "restrict.uid_min: must be between 1 and 4294967294"},
                {"{'name':'a','restrict':{'uid_max':4294967295}}",
                 "restrict.uid_max: must be between 1 and 4294967294"},
                {"{'name':'a','restrict':{'uid_min':'64000'}}",
                 "restrict.uid_min: expected an integer, got string"},
                {"{'name':'a','restrict':{'uid_min':6.4e4}}",
                 "restrict.uid_min: expected an integer, got floating-point number"},
                {"{'name':'a','restrict':{'uid_min':70000,'uid_max':69999}}",
                 "restrict.uid_max: must not be below restrict.uid_min (70000 > 69999)"},
                /* the defaults take part: a uid_min above the default uid_max */
                {"{'name':'a','restrict':{'uid_min':70000}}",
                 "restrict.uid_max: must not be below restrict.uid_min (70000 > 64999)"},
                {"{'name':'a','restrict':{'share_uid':1}}",
                 "restrict.share_uid: expected a boolean, got integer"},
                {"{'name':'a','restrict':{'namespaces':[]}}",
                 "restrict.namespaces: expected an object, got array"},
                {"{'name':'a','restrict':{'namespaces':{'net':'yes'}}}",
                 "restrict.namespaces.net: expected a boolean, got string"},
                /* namespaces are only for jail (the default mode) */
                {"{'name':'a','restrict':{'namespaces':{'net':true},'mode':'qemu'}}",
                 "restrict.namespaces.net: needs restrict.mode \"jail\""},
                {"{'name':'a','restrict':{'namespaces':{'pid':true},'mode':'none'}}",
                 "restrict.namespaces.pid: needs restrict.mode \"jail\""},
                {"{'name':'a','restrict':{'mode':'qemu','namespaces':{'pid':true}}}",
                 "restrict.namespaces.pid: needs restrict.mode \"jail\""},
                {"{'name':'a','restrict':{'rlimits':1}}",
                 "restrict.rlimits: expected an object, got integer"},
                {"{'name':'a','restrict':{'rlimits':{'fsize':-1}}}",
                 "restrict.rlimits.fsize: must be between 0 and 18446744073709551614"},
                {"{'name':'a','restrict':{'rlimits':{'core':18446744073709551615}}}",
                 "restrict.rlimits.core: must be between 0 and 18446744073709551614"},
                {"{'name':'a','restrict':{'rlimits':{'msgqueue':'infinite'}}}",
                 "restrict.rlimits.msgqueue: must be an integer or \"unlimited\""},
                {"{'name':'a','restrict':{'rlimits':{'locks':'Unlimited'}}}",
                 "restrict.rlimits.locks: must be an integer or \"unlimited\""},
                {"{'name':'a','restrict':{'rlimits':{'locks':'unlimited\\u0000'}}}",
                 "restrict.rlimits.locks: must be an integer or \"unlimited\""},
                {"{'name':'a','restrict':{'rlimits':{'memlock':1.5}}}",
                 "restrict.rlimits.memlock: expected an integer or \"unlimited\", got "
                 "floating-point number"},
                {"{'name':'a','restrict':{'rlimits':{'nofile':true}}}",
                 "restrict.rlimits.nofile: expected an integer or \"unlimited\", got boolean"},
        };

        run_bad_cases(cases, ELEMENTSOF(cases));
}

static void test_extra_args(void **state)
{
        static const bad_case cases[] = {
                {"{'name':'a','extra_args':'-S'}", "extra_args: expected an array, got string"},
                {"{'name':'a','extra_args':[1]}", "extra_args[0]: expected a string, got integer"},
                {"{'name':'a','extra_args':['-device',['x']]}",
                 "extra_args[1]: expected a string, got array"},
                {"{'name':'a','extra_args':['']}", "extra_args[0]: must not be empty"},
                {"{'name':'a','extra_args':['-device','a\\nb']}",
                 "extra_args[1]: must not contain control characters"},
                {"{'name':'a','extra_args':['-device','\\u001b[2J']}",
                 "extra_args[1]: must not contain control characters"},
        };
        _cleanup_free_ char *max = repeat('x', QDM_CONFIG_MAX_STRING);
        _cleanup_free_ char *good = NULL, *bad = NULL;
        char *text = NULL;
        size_t size = 0;
        FILE *f;

        run_bad_cases(cases, ELEMENTSOF(cases));

        assert_true(asprintf(&good, "{'name':'a','extra_args':['-name','%s']}", max) > 0);
        qdm_config_free(parse_ok(good));
        assert_true(asprintf(&bad, "{'name':'a','extra_args':['-x','%sy']}", max) > 0);
        expect_error(bad, "extra_args[1]: must be at most 4096 bytes long");

        for (int n = 64; n <= 65; n++) {
                f = open_memstream(&text, &size);
                assert_non_null(f);
                fputs("{'name':'a','extra_args':[", f);
                for (int i = 0; i < n; i++)
                        fprintf(f, "%s'-no-reboot'", i ? "," : "");
                fputs("]}", f);
                assert_int_equal(fclose(f), 0);
                if (n == 64)
                        qdm_config_free(parse_ok(text));
                else
                        expect_error(text, "extra_args: at most 64 elements are allowed");
                free(text);
                text = NULL;
        }
}

/* Every spelling QEMU accepts (-opt, --opt), plus "-opt=value" to be safe, in every mode. */
static void test_forbidden_extra_args(void **state)
{
        static const struct {
                const char *name;
                bool always; /* refused with mode "none" too */
        } options[] = {
                {"S", true},          {"qmp", true},
                {"qmp-pretty", true}, {"monitor", true},
                {"mon", true},        {"daemonize", true},
                {"pidfile", true},    {"preconfig", true},
                {"readconfig", true}, {"set", true},
                {"sandbox", false},   {"runas", false},
                {"run-with", false},  {"chroot", false},
                {"chardev", false},   {"writeconfig", false},
                {"gdb", false},       {"s", false},
                {"qtest", false},     {"vnc", false},
                {"fw_cfg", false},    {"initrd", false},
                {"kernel", false},    {"bios", false},
                {"acpitable", false}, {"smbios", false},
                {"mem-path", false},  {"D", false},
                {"trace", false},     {"audiodev", false},
                {"nographic", false}, {"snapshot", false},
                {"spice", false},     {"drive", false},
                {"blockdev", false},  {"hda", false},
                {"cdrom", false},     {"pflash", false},
                {"fsdev", false},     {"virtfs", false},
                {"netdev", false},    {"nic", false},
                {"net", false},
        };
        static const struct {
                const char *dashes, *suffix;
        } spellings[] = {{"-", ""}, {"--", ""}, {"-", "=x"}, {"--", "=x"}};
        static const char *const modes[] = {"none", "qemu", "jail"};

        for (size_t o = 0; o < ELEMENTSOF(options); o++)
                for (size_t s = 0; s < ELEMENTSOF(spellings); s++)
                        for (size_t md = 0; md < ELEMENTSOF(modes); md++) {
                                _cleanup_free_ char *arg = NULL, *text = NULL, *prefix = NULL;
                                bool refused = options[o].always || md > 0;

                                assert_true(asprintf(&arg, "%s%s%s", spellings[s].dashes,
                                                     options[o].name, spellings[s].suffix) > 0);
                                assert_true(asprintf(&text,
                                                     "{'name':'a','extra_args':['-device',"
                                                     "'virtio-rng-pci','%s','x'],"
                                                     "'restrict':{'mode':'%s'}}",
                                                     arg, modes[md]) > 0);
                                if (!refused) {
                                        qdm_config_free(parse_ok(text));
                                        continue;
                                }
                                if (options[o].always)
                                        assert_true(asprintf(&prefix,
                                                             "extra_args[2]: -%s is not allowed: ",
                                                             options[o].name) > 0);
                                else
                                        assert_true(asprintf(&prefix,
                                                             "extra_args[2]: -%s is not allowed "
                                                             "with restrict.mode \"%s\": ",
                                                             options[o].name, modes[md]) > 0);
                                expect_error(text, prefix);
                        }

        /* Names that merely start like a forbidden one are fine. */
        qdm_config_free(parse_ok("{'name':'a','restrict':{'mode':'none'},"
                                 "'extra_args':['-Sx','-monitorx','-setting',"
                                 "'-smp','2','-serial','none']}"));
        /* The default mode is "jail". */
        expect_error("{'name':'a','extra_args':['-sandbox','off']}",
                     "extra_args[0]: -sandbox is not allowed with restrict.mode \"jail\"");
        /* Mode after extra_args in the document still counts. */
        expect_error("{'name':'a','extra_args':['-runas','0:0'],'restrict':{'mode':'jail'}}",
                     "extra_args[0]: -runas is not allowed with restrict.mode \"jail\"");
}

/* In the restricted modes an allowed option may still not name a host path in its value,
 * and a bare argument (a disk image to QEMU) is refused; with mode "none" all of it passes. */
static void test_extra_arg_values(void **state)
{
        static const struct {
                const char *args;   /* JSON array elements */
                const char *prefix; /* expected error prefix when restricted */
        } cases[] = {
                {"'-device','loader,file=/etc/shadow'", "extra_args[1]: -device is not allowed "
                                                        "with restrict.mode"},
                {"'-device','e1000,romfile=/etc/shadow'", "extra_args[1]: -"},
                {"'-device','vfio-pci,host=01:00.0'", "extra_args[1]: -"},
                {"'-object','memory-backend-file,id=m,mem-path=/etc,share=on'",
                 "extra_args[1]: -object is not allowed with restrict.mode"},
                {"'-object','secret,id=s,file=/etc/shadow'", "extra_args[1]: -"},
                {"'-object','rng-random,id=r,filename=/etc/shadow'", "extra_args[1]: -"},
                {"'-serial','unix:/tmp/s,server=on'", "extra_args[1]: -"},
                {"'-display','vnc=:0'", "extra_args[1]: -"},
                {"'-incoming','tcp:0:4444'", "extra_args[1]: -"},
                {"'-boot','splash=/etc/shadow'", "extra_args[1]: -"},
                {"'-global','x.file=/etc/shadow'", "extra_args[1]: -"},
                {"'/etc/shadow'", "extra_args[0]: a bare argument is not allowed"},
                {"'-device'", "extra_args[0]: -device is not allowed without its value"},
                /* ",," is a literal comma, not a separator: "a,,file=x" is one value */
                {"'-device','virtio-rng-pci,id=a,,file=x,file=/etc/shadow'", "extra_args[1]: -"},
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *restricted = NULL, *none = NULL;
                assert_true(asprintf(&restricted, "{'name':'a','extra_args':[%s]}", cases[i].args) >
                            0);
                assert_true(asprintf(&none,
                                     "{'name':'a','restrict':{'mode':'none'},'extra_args':[%s]}",
                                     cases[i].args) > 0);
                expect_error(restricted, cases[i].prefix);
                if (!strstr(cases[i].prefix, "without its value"))
                        qdm_config_free(parse_ok(none));
        }
        /* What stays allowed when restricted. */
        static const char *const good[] = {
                "'-serial','none','-parallel','null'",
                "'-object','rng-random,id=r,filename=/dev/"
                "urandom','-device','virtio-rng-pci,rng=r'",
                "'-incoming','defer','-display','none'",
                "'-device','virtio-rng-pci,id=a,,file=x'",
                "'-global','kvm-pit.lost_tick_policy=discard','-no-reboot'",
        };
        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                _cleanup_free_ char *text = NULL;
                assert_true(asprintf(&text, "{'name':'a','extra_args':[%s]}", good[i]) > 0);
                qdm_config_free(parse_ok(text));
        }
}

/* ---- files and the API ------------------------------------------------------------------- */

static void test_file(void **state)
{
        _cleanup_free_ char *path = NULL, *error = NULL, *big = NULL;
        _cleanup_close_ int fd = -1;
        qdm_config *c = NULL;
        char *chunk;

        assert_true(asprintf(&path, "%s/good/minimal.json", QDM_TEST_CONFIGS_DIR) > 0);
        assert_int_equal(qdm_config_new_from_file(path, &c, &error), 0);
        assert_null(error);
        assert_string_equal(qdm_config_get_name(c), "vm0");
        c = qdm_config_free(c);
        assert_null(c);

        assert_int_equal(qdm_config_new_from_file("/nonexistent/qdm.json", &c, &error), -ENOENT);
        assert_null(c);
        assert_string_equal(error, "/nonexistent/qdm.json: No such file or directory");
        free(error);
        error = NULL;
        assert_int_equal(qdm_config_new_from_file(test_dir, &c, &error), -EISDIR);
        free(error);
        error = NULL;

        /* A file larger than 1 MiB is refused as -EFBIG without reading all of it. */
        assert_true(asprintf(&big, "%s/big.json", test_dir) > 0);
        fd = open(big, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        chunk = repeat(' ', 65536);
        assert_int_equal(write(fd, "{\"name\":\"a\"}", 12), 12);
        for (int i = 0; i < 17; i++)
                assert_int_equal(write(fd, chunk, 65536), 65536);
        free(chunk);
        assert_int_equal(qdm_config_new_from_file(big, &c, &error), -EFBIG);
        assert_null(c);
        assert_string_equal(error, "document: larger than 1048576 bytes");
        assert_int_equal(unlink(big), 0);
}

/* Samples in tests/unit/configs: good/ must parse (after @D@ expansion), and each bad/ file
 * must fail with the prefix listed here; a sample without an entry fails the test. */
static const struct {
        const char *file;
        const char *prefix;
} bad_samples[] = {
        {"comma-in-machine.json", "machine: must be 1-64 characters of [a-z0-9_.-]"},
        {"comma-in-disk.json", "disks[0].path: must not contain ','"},
        {"duplicate-escaped.json", "name: duplicate key"},
        {"duplicate-nested.json", "restrict.rlimits.core: duplicate key"},
        {"forbidden-extra-arg.json", "extra_args[2]: -qmp is not allowed: "},
        {"namespaces-without-jail.json", "restrict.namespaces.net: needs restrict.mode \"jail\""},
        {"not-an-object.json", "document: expected an object, got array"},
        {"trailing-garbage.json", "document: invalid JSON at line 5, column 1: "},
        {"unknown-nested.json", "disks[0].cache: unknown key"},
        {"weakening-extra-arg.json",
         "extra_args[0]: -sandbox is not allowed with restrict.mode \"jail\""},
};

static char *read_sample(const char *dir, const char *file)
{
        _cleanup_free_ char *path = NULL;
        _cleanup_fclose_ FILE *f = NULL;
        char *buf = NULL;
        size_t size = 0;
        FILE *out;
        int c;

        assert_true(asprintf(&path, "%s/%s/%s", QDM_TEST_CONFIGS_DIR, dir, file) > 0);
        f = fopen(path, "re");
        assert_non_null(f);
        out = open_memstream(&buf, &size);
        assert_non_null(out);
        while ((c = fgetc(f)) != EOF)
                fputc(c, out);
        assert_int_equal(fclose(out), 0);
        return buf;
}

static int is_sample(const struct dirent *de)
{
        size_t n = strlen(de->d_name);
        return n > 5 && strcmp(de->d_name + n - 5, ".json") == 0;
}

static void test_samples(void **state)
{
        _cleanup_free_ char *good_dir = NULL, *bad_dir = NULL;
        struct dirent **list;
        int n;

        assert_true(asprintf(&good_dir, "%s/good", QDM_TEST_CONFIGS_DIR) > 0);
        n = scandir(good_dir, &list, is_sample, alphasort);
        assert_true(n >= 3);
        for (int i = 0; i < n; i++) {
                _cleanup_free_ char *raw = read_sample("good", list[i]->d_name);
                _cleanup_free_ char *text = NULL;
                char *p;

                /* Samples are real JSON: only @D@ is expanded, quotes stay as they are. */
                text = strdup(raw);
                assert_non_null(text);
                while ((p = strstr(text, "@D@"))) {
                        char *next = NULL;
                        *p = '\0';
                        assert_true(asprintf(&next, "%s%s%s", text, test_dir, p + 3) > 0);
                        free(text);
                        text = next;
                }
                qdm_config_free(parse_ok_raw(text, strlen(text)));
                free(list[i]);
        }
        free(list);

        assert_true(asprintf(&bad_dir, "%s/bad", QDM_TEST_CONFIGS_DIR) > 0);
        n = scandir(bad_dir, &list, is_sample, alphasort);
        assert_int_equal(n, (int)ELEMENTSOF(bad_samples));
        for (int i = 0; i < n; i++) {
                _cleanup_free_ char *text = read_sample("bad", list[i]->d_name);
                size_t j;

                for (j = 0; j < ELEMENTSOF(bad_samples); j++)
                        if (streq_ptr(bad_samples[j].file, list[i]->d_name))
                                break;
                if (j == ELEMENTSOF(bad_samples))
                        fail_msg("configs/bad/%s has no expected message", list[i]->d_name);
                expect_error_raw(text, strlen(text), -EINVAL, bad_samples[j].prefix);
                free(list[i]);
        }
        free(list);
}

static void test_api(void **state)
{
        _cleanup_free_ char *error = NULL;
        qdm_config *c = NULL;

        assert_int_equal(qdm_config_new_from_json(NULL, 1, &c, &error), -EINVAL);
        assert_int_equal(qdm_config_new_from_json("{}", 2, NULL, &error), -EINVAL);
        assert_int_equal(qdm_config_new_from_file(NULL, &c, &error), -EINVAL);
        assert_null(error);
        assert_null(c);
        assert_null(qdm_config_free(NULL));
        assert_null(qdm_config_get_name(NULL));
        qdm_model_free(NULL);

        /* The text need not be NUL-terminated: only len bytes are read. */
        c = parse_ok_raw("{\"name\":\"vm0\"}garbage", 14);
        assert_string_equal(qdm_config_get_name(c), "vm0");
        qdm_config_free(c);

        assert_string_equal(qdm_restrict_mode_to_string(QDM_RESTRICT_JAIL), "jail");
        assert_string_equal(qdm_accel_to_string(QDM_ACCEL_TCG), "tcg");
}

static void test_privileges(void **state)
{
        _cleanup_free_ char *error = NULL;
        qdm_config *c = parse_ok("{'name':'a'}");
        qdm_config *none = parse_ok("{'name':'a','restrict':{'mode':'none'}}");

        assert_int_equal(config_check_privileges(qdm_config_model(none), &error), 0);
        assert_null(error);
        if (geteuid() == 0) {
                assert_int_equal(config_check_privileges(qdm_config_model(c), &error), 0);
                assert_null(error);
        } else {
                assert_int_equal(config_check_privileges(qdm_config_model(c), &error), -EPERM);
                assert_string_equal(error, "restrict.mode: \"qemu\" needs root (run as root or "
                                           "set restrict.mode to \"none\")");
        }
        qdm_config_free(c);
        qdm_config_free(none);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_defaults),
                cmocka_unit_test(test_every_key),
                cmocka_unit_test(test_good_values),
                cmocka_unit_test(test_document),
                cmocka_unit_test(test_nul),
                cmocka_unit_test(test_depth_bomb),
                cmocka_unit_test(test_size_bomb),
                cmocka_unit_test(test_many_keys),
                cmocka_unit_test(test_duplicate_keys),
                cmocka_unit_test(test_unknown_keys),
                cmocka_unit_test(test_name),
                cmocka_unit_test(test_qemu),
                cmocka_unit_test(test_machine_accel),
                cmocka_unit_test(test_numbers),
                cmocka_unit_test(test_kernel),
                cmocka_unit_test(test_disks),
                cmocka_unit_test(test_block_device),
                cmocka_unit_test(test_fsize_and_writable_disks),
                cmocka_unit_test(test_restrict),
                cmocka_unit_test(test_extra_args),
                cmocka_unit_test(test_forbidden_extra_args),
                cmocka_unit_test(test_extra_arg_values),
                cmocka_unit_test(test_file),
                cmocka_unit_test(test_samples),
                cmocka_unit_test(test_api),
                cmocka_unit_test(test_privileges),
        };

        return cmocka_run_group_tests(tests, setup, teardown);
}

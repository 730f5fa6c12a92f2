/* A turnstile's firmware, in C, against facevault's C ABI (include/facevault.h).
 *
 * It creates a vault in DIR, enrols three people at the front desk, lets two camera threads
 * identify them while the desk works, verifies one, withdraws another (whom no camera then
 * finds), backs up, compacts the file, checks the audit chain, and opens the vault again as a
 * restarted terminal would. Every call's status is checked; the program exits 0 only
 * if every answer was the right one. tests/ffi.rs builds it against the static library, runs it,
 * and runs it again under valgrind.
 *
 *   cc -std=c11 -Iinclude examples/c/turnstile.c target/debug/libfacevault.a -lpthread -ldl -lm
 *   ./a.out DIR
 */
#include <pthread.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "facevault.h"

#define DIM 64
#define PEOPLE 3
#define LOOKUPS_PER_CAMERA 40

static int failures = 0;

/* Checks a status; on failure prints the call and the library's own code and message. */
static int check(fv_status status, const char *call) {
    if (status != FV_OK) {
        fprintf(stderr, "%s: status %d, %s: %s\n", call, (int)status, fv_last_error_code(),
                fv_last_error_message());
        failures++;
        return 0;
    }
    return 1;
}

static void expect(int condition, const char *what) {
    if (!condition) {
        fprintf(stderr, "wrong answer: %s\n", what);
        failures++;
    }
}

/* A face: a fixed pseudo-random direction per person, and a capture of it with a little noise. */
static void face(unsigned person, unsigned capture, float *out) {
    unsigned state = 2654435761u * (person + 1);
    for (int i = 0; i < DIM; i++) {
        state = state * 1103515245u + 12345u;
        float base = (float)((state >> 8) % 2001) / 1000.0f - 1.0f;
        unsigned noise = (state ^ (capture * 2246822519u)) * 3266489917u;
        out[i] = base + 0.05f * ((float)((noise >> 8) % 2001) / 1000.0f - 1.0f);
    }
}

struct camera {
    const fv_vault *vault;
    const fv_session *gate;
    uint8_t subjects[PEOPLE][16];
    int right;
};

static void *camera_loop(void *arg) {
    struct camera *camera = arg;
    float probe[DIM];
    fv_candidate found[3];
    for (unsigned n = 0; n < LOOKUPS_PER_CAMERA; n++) {
        unsigned person = n % PEOPLE;
        size_t count = 0;
        face(person, n + 1, probe);
        if (!check(fv_identify(camera->vault, camera->gate, probe, DIM, 3, found, 3, &count), "fv_identify"))
            continue;
        if (count > 0 && memcmp(found[0].subject, camera->subjects[person], 16) == 0)
            camera->right++;
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    char db[4096];
    snprintf(db, sizeof db, "%s/turnstile.db", argv[1]);
    uint8_t key[32];
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)(i * 7 + 1);

    fv_vault *vault = NULL;
    if (!check(fv_create(db, &key, DIM, "c-model", "admin", "admin password 1", &vault), "fv_create"))
        return 1;
    memset(key, 0, sizeof key); /* facevault keeps its own copy, zeroed when dropped */
    fv_session *admin = NULL, *desk = NULL, *gate = NULL;
    check(fv_login(vault, "admin", "admin password 1", &admin), "fv_login admin");
    check(fv_add_user(vault, admin, "desk", "enroller", "desk password 1"), "fv_add_user desk");
    check(fv_add_user(vault, admin, "gate", "operator", "gate password 1"), "fv_add_user gate");
    fv_notice notice = {
        .version = "2026-12",
        .processor_name = "Acme Gates Ltd",
        .processor_contact = "privacy@acme.example",
        .purpose = "entry to the building",
        .method = "1:N identification at the turnstile",
        .retention = "while you work here, at most one year",
        .necessity_and_impact = "replaces badges; a leak would expose a face template",
        .rights = "withdraw at reception",
    };
    check(fv_publish_notice(vault, admin, &notice), "fv_publish_notice");
    /* Who processes, why, where, and the alternative to a face (Arts. 3-4, 10, 13); then the
       impact assessment of that purpose and method, without which nobody is enrolled (Art. 9). */
    check(fv_set_profile(vault, admin,
                         "{\"processor_name\": \"Acme Gates Ltd\", \"processor_contact\": \"privacy@acme.example\","
                         " \"purpose\": \"entry to the building\", \"method\": \"1:N identification at the turnstile\","
                         " \"place\": \"non_public\", \"capture_area\": \"1 m before the turnstile\","
                         " \"signs_posted\": true, \"alternative_method\": \"staff badge at the same turnstile\"}"),
          "fv_set_profile");
    check(fv_add_assessment(vault, admin,
                            "{\"date\": \"2026-11-20\", \"purpose\": \"entry to the building\","
                            " \"method\": \"1:N identification at the turnstile\","
                            " \"lawful_and_necessary\": \"lawful on consent, replaces shared badges\","
                            " \"impact_and_mitigation\": \"low; badges offered instead\","
                            " \"risks\": \"device theft\", \"protection_measures\": \"encrypted, audited, role-based\","
                            " \"author\": \"DPO\", \"report_sha256\": "
                            "\"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"}"),
          "fv_add_assessment");
    check(fv_login(vault, "desk", "desk password 1", &desk), "fv_login desk");
    check(fv_login(vault, "gate", "gate password 1", &gate), "fv_login gate");
    printf("vault created, users, notice, profile and assessment in place\n");

    struct camera cameras[2];
    fv_consent consent = {
        .notice_version = "2026-12",
        .consent_method = "signed form at reception",
        .birth_date = NULL,
        .guardian_name = NULL,
        .guardian_relationship = NULL,
        .retention_secs = 0,
        .transfer_consent = false,
    };
    float template_[DIM];
    for (unsigned person = 0; person < PEOPLE; person++) {
        face(person, 0, template_);
        check(fv_enrol(vault, desk, &consent, template_, DIM, &cameras[0].subjects[person]), "fv_enrol");
    }
    memcpy(cameras[1].subjects, cameras[0].subjects, sizeof cameras[0].subjects);
    printf("three people enrolled\n");

    /* 1:1 at the gate: person 0 shows a badge, the camera confirms. */
    bool matched = false;
    double score = 0.0;
    face(0, 99, template_);
    check(fv_verify(vault, gate, &cameras[0].subjects[0], template_, DIM, &matched, &score), "fv_verify");
    /* The terminal's operator role gets the decision; the score is withheld (NaN) unless the
       vault is configured to show it: a score is an oracle for rebuilding a face. */
    expect(matched && isnan(score), "person 0 verifies as themselves, and the score is withheld");
    printf("verify: match=%d (score withheld from the operator)\n", (int)matched);

    /* Two camera threads identify while the desk enrols nobody new but reads the stats. */
    pthread_t threads[2];
    for (int i = 0; i < 2; i++) {
        cameras[i].vault = vault;
        cameras[i].gate = gate;
        cameras[i].right = 0;
        pthread_create(&threads[i], NULL, camera_loop, &cameras[i]);
    }
    fv_vault_stats stats;
    check(fv_stats(vault, desk, &stats), "fv_stats");
    for (int i = 0; i < 2; i++)
        pthread_join(threads[i], NULL);
    expect(stats.subjects == PEOPLE, "three subjects");
    expect(cameras[0].right == LOOKUPS_PER_CAMERA && cameras[1].right == LOOKUPS_PER_CAMERA,
           "every camera lookup names the right person");
    printf("two cameras: %d and %d of %d right\n", cameras[0].right, cameras[1].right, LOOKUPS_PER_CAMERA);

    /* Person 2 withdraws consent: erased at once, found by no camera afterwards. */
    check(fv_withdraw(vault, desk, &cameras[0].subjects[2]), "fv_withdraw");
    fv_candidate found[3];
    size_t count = 0;
    face(2, 7, template_);
    check(fv_identify(vault, gate, template_, DIM, 3, found, 3, &count), "fv_identify after withdrawal");
    for (size_t i = 0; i < count; i++)
        expect(memcmp(found[i].subject, cameras[0].subjects[2], 16) != 0, "a withdrawn person is never found");
    printf("person 2 withdrew; identify now finds %zu candidate(s), none of them person 2\n", count);

    /* Refusals come back as statuses with the library's code. */
    expect(fv_erase(vault, gate, &cameras[0].subjects[0]) == FV_REFUSED &&
               strcmp(fv_last_error_code(), "forbidden") == 0,
           "an operator may not erase");
    expect(fv_verify(vault, gate, NULL, template_, DIM, &matched, &score) == FV_NULL_ARGUMENT,
           "a null subject is refused");
    expect(fv_verify(vault, gate, &cameras[0].subjects[0], template_, DIM - 1, &matched, &score) == FV_BAD_INPUT &&
               strcmp(fv_last_error_code(), "wrong_dimension") == 0,
           "a probe of the wrong length is refused");
#ifdef FACEVAULT_TEST_HOOKS
    expect(fv_test_panic() == FV_PANIC && strcmp(fv_last_error_code(), "panic") == 0,
           "a panic inside facevault comes back as FV_PANIC");
    printf("a forced panic came back as status %d\n", (int)FV_PANIC);
#endif

    char backup[4096];
    snprintf(backup, sizeof backup, "%s/vault.fvbackup", argv[1]);
    uint64_t backup_bytes = 0;
    check(fv_backup(vault, admin, backup, &backup_bytes), "fv_backup");
    expect(backup_bytes > 160, "a backup holds the vault");
    expect(fv_backup(vault, gate, backup, &backup_bytes) == FV_REFUSED, "an operator may not back up");
    printf("backed up: %llu bytes\n", (unsigned long long)backup_bytes);

    /* Once after a firmware update from an older build: the file rewritten from its rows. */
    uint64_t compacted_bytes = 0;
    check(fv_compact(vault, admin, &compacted_bytes), "fv_compact");
    expect(compacted_bytes > 0, "the compacted file holds the vault");
    expect(fv_compact(vault, gate, &compacted_bytes) == FV_REFUSED, "an operator may not compact");
    printf("compacted: %llu bytes\n", (unsigned long long)compacted_bytes);

    uint64_t entries = 0;
    check(fv_audit_verify(vault, admin, &entries), "fv_audit_verify");
    expect(entries > 2 * LOOKUPS_PER_CAMERA, "every lookup is in the audit");
    printf("audit chain intact: %llu records\n", (unsigned long long)entries);

    fv_session_free(gate);
    fv_session_free(desk);
    fv_session_free(admin);
    check(fv_close(vault), "fv_close");

    /* The terminal restarts: the vault opens again from its file, person 0 still verifies at the
       gate, and the person who withdrew is still gone. */
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)(i * 7 + 1);
    vault = NULL;
    fv_status opened = fv_open(db, &key, &vault);
    memset(key, 0, sizeof key);
    if (check(opened, "fv_open")) {
        check(fv_login(vault, "desk", "desk password 1", &desk), "fv_login desk after the restart");
        check(fv_login(vault, "gate", "gate password 1", &gate), "fv_login gate after the restart");
        face(0, 98, template_);
        matched = false;
        check(fv_verify(vault, gate, &cameras[0].subjects[0], template_, DIM, &matched, &score),
              "fv_verify after the restart");
        check(fv_stats(vault, desk, &stats), "fv_stats after the restart");
        expect(matched && stats.subjects == PEOPLE - 1,
               "after the restart person 0 verifies, and the one who withdrew is gone");
        printf("reopened: %llu subjects, person 0 verifies: match=%d\n",
               (unsigned long long)stats.subjects, (int)matched);
        fv_session_free(gate);
        fv_session_free(desk);
        check(fv_close(vault), "fv_close after the restart");
    }
    if (failures != 0) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("done\n");
    return 0;
}

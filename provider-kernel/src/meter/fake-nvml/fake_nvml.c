/*
 * A stand-in for libnvidia-ml.so (NVIDIA Management Library) for machines without an
 * NVIDIA GPU. It exports the NVML entry points the meter calls, with the same C
 * signatures and return codes as nvml.h (https://docs.nvidia.com/deploy/nvml-api/), so the
 * meter's real FFI path (koffi → dlopen → these symbols) runs in tests exactly as it
 * would against a driver.
 *
 * Behaviour is scripted by a control file named by the environment variable
 * FAKE_NVML_CONTROL, re-read whenever it changes (tests replace it by rename). Lines:
 *   fail_init <code>                 nvmlInit_v2 returns <code>
 *   count <n>                        number of GPUs (max 8)
 *   name <gpu> <text…>               device name
 *   memory <gpu> <total> <used>      bytes
 *   limit <gpu> <mW>                 enforced power limit; 0 = NOT_SUPPORTED
 *   energy <gpu> counter|unsupported|error
 *   power_reading <gpu> ok|unsupported
 *   update <gpu> <ms>                counter update period (counter is quantized to it)
 *   offset <gpu> <mJ>                counter value at the start (energy since driver load)
 *   power <gpu> <t_ms> <mW> <util%>  piecewise-constant power from Unix time t_ms on
 *   reset <gpu> <t_ms>               the counter restarts from 0 at t_ms (driver reload)
 *   stuck <gpu> <t0_ms> <t1_ms>      the counter stays frozen within [t0, t1)
 *   proc <gpu> <pid> <sm%>           per-process SM utilization samples
 * The counter at time t is offset + ∫ power dt (mJ) up to t quantized to the update period,
 * which is how real boards behave (it advances every 20-100 ms).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>

typedef int nvmlReturn_t;
#define NVML_SUCCESS 0
#define NVML_ERROR_UNINITIALIZED 1
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_NOT_SUPPORTED 3
#define NVML_ERROR_NOT_FOUND 6
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define NVML_ERROR_GPU_IS_LOST 15
#define NVML_ERROR_UNKNOWN 999

typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct { unsigned int gpu, memory; } nvmlUtilization_t;
typedef struct {
  unsigned int pid;
  unsigned long long timeStamp;
  unsigned int smUtil, memUtil, encUtil, decUtil;
} nvmlProcessUtilizationSample_t;

#define MAX_GPUS 8
#define MAX_SEGS 512
#define MAX_MARKS 32

typedef struct { long long t; unsigned int mw, util; } seg_t;
typedef struct { long long t0, t1; } span_t;

struct nvmlDevice_st {
  char name[96];
  unsigned long long mem_total, mem_used, offset;
  unsigned int limit_mw, update_ms;
  int energy_mode; /* 0 counter, 1 unsupported, 2 error */
  int power_ok;
  int nsegs, nresets, nstuck, nprocs;
  seg_t segs[MAX_SEGS];
  long long resets[MAX_MARKS];
  span_t stuck[MAX_MARKS];
  unsigned int proc_pid[MAX_MARKS], proc_sm[MAX_MARKS];
};
typedef struct nvmlDevice_st *nvmlDevice_t;

static struct nvmlDevice_st g_dev[MAX_GPUS];
static unsigned int g_count = 0;
static int g_fail_init = 0;
static int g_init = 0;
static struct stat g_seen;
static int g_loaded = 0;

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void reset_state(void) {
  memset(g_dev, 0, sizeof g_dev);
  g_count = 0;
  g_fail_init = 0;
  for (int i = 0; i < MAX_GPUS; i++) {
    snprintf(g_dev[i].name, sizeof g_dev[i].name, "Fake NVIDIA GPU %d", i);
    g_dev[i].limit_mw = 300000;
    g_dev[i].update_ms = 20;
    g_dev[i].power_ok = 1;
    g_dev[i].mem_total = 80ULL << 30;
  }
}

static void load_control(void) {
  const char *path = getenv("FAKE_NVML_CONTROL");
  struct stat st;
  if (!path || stat(path, &st) != 0) {
    if (!g_loaded) { reset_state(); g_loaded = 1; }
    return;
  }
  if (g_loaded && st.st_ino == g_seen.st_ino && st.st_size == g_seen.st_size &&
      st.st_mtim.tv_sec == g_seen.st_mtim.tv_sec && st.st_mtim.tv_nsec == g_seen.st_mtim.tv_nsec)
    return;
  FILE *f = fopen(path, "r");
  if (!f) return;
  reset_state();
  g_seen = st;
  g_loaded = 1;
  char line[512], word[32], text[256];
  while (fgets(line, sizeof line, f)) {
    unsigned int gpu = 0;
    if (sscanf(line, "%31s", word) != 1 || word[0] == '#') continue;
    if (!strcmp(word, "fail_init")) { sscanf(line, "%*s %d", &g_fail_init); continue; }
    if (!strcmp(word, "count")) { sscanf(line, "%*s %u", &g_count); if (g_count > MAX_GPUS) g_count = MAX_GPUS; continue; }
    if (sscanf(line, "%*s %u", &gpu) != 1 || gpu >= MAX_GPUS) continue;
    struct nvmlDevice_st *d = &g_dev[gpu];
    if (!strcmp(word, "name")) {
      if (sscanf(line, "%*s %*u %255[^\n]", text) == 1) snprintf(d->name, sizeof d->name, "%.95s", text);
    } else if (!strcmp(word, "memory")) {
      sscanf(line, "%*s %*u %llu %llu", &d->mem_total, &d->mem_used);
    } else if (!strcmp(word, "limit")) {
      sscanf(line, "%*s %*u %u", &d->limit_mw);
    } else if (!strcmp(word, "energy")) {
      if (sscanf(line, "%*s %*u %31s", text) == 1)
        d->energy_mode = !strcmp(text, "unsupported") ? 1 : !strcmp(text, "error") ? 2 : 0;
    } else if (!strcmp(word, "power_reading")) {
      if (sscanf(line, "%*s %*u %31s", text) == 1) d->power_ok = strcmp(text, "unsupported") != 0;
    } else if (!strcmp(word, "update")) {
      sscanf(line, "%*s %*u %u", &d->update_ms);
      if (d->update_ms == 0) d->update_ms = 1;
    } else if (!strcmp(word, "offset")) {
      sscanf(line, "%*s %*u %llu", &d->offset);
    } else if (!strcmp(word, "power") && d->nsegs < MAX_SEGS) {
      seg_t *s = &d->segs[d->nsegs];
      if (sscanf(line, "%*s %*u %lld %u %u", &s->t, &s->mw, &s->util) == 3) d->nsegs++;
    } else if (!strcmp(word, "reset") && d->nresets < MAX_MARKS) {
      if (sscanf(line, "%*s %*u %lld", &d->resets[d->nresets]) == 1) d->nresets++;
    } else if (!strcmp(word, "stuck") && d->nstuck < MAX_MARKS) {
      span_t *s = &d->stuck[d->nstuck];
      if (sscanf(line, "%*s %*u %lld %lld", &s->t0, &s->t1) == 2) d->nstuck++;
    } else if (!strcmp(word, "proc") && d->nprocs < MAX_MARKS) {
      if (sscanf(line, "%*s %*u %u %u", &d->proc_pid[d->nprocs], &d->proc_sm[d->nprocs]) == 2) d->nprocs++;
    }
  }
  fclose(f);
}

/* Segments are written in time order by the tests; the last one at or before t rules. */
static const seg_t *seg_at(const struct nvmlDevice_st *d, long long t) {
  const seg_t *found = NULL;
  for (int i = 0; i < d->nsegs; i++)
    if (d->segs[i].t <= t) found = &d->segs[i];
  return found;
}

/* ∫ power dt over [a, b) in microjoules (mW × ms = µJ). */
static unsigned long long integrate_uj(const struct nvmlDevice_st *d, long long a, long long b) {
  unsigned long long uj = 0;
  for (int i = 0; i < d->nsegs; i++) {
    long long s0 = d->segs[i].t, s1 = i + 1 < d->nsegs ? d->segs[i + 1].t : b;
    if (s0 < a) s0 = a;
    if (s1 > b) s1 = b;
    if (s1 > s0) uj += (unsigned long long)d->segs[i].mw * (unsigned long long)(s1 - s0);
  }
  return uj;
}

static unsigned long long counter_at(const struct nvmlDevice_st *d, long long t) {
  long long tq = t - (t % d->update_ms);
  for (int i = 0; i < d->nstuck; i++)
    if (t >= d->stuck[i].t0 && t < d->stuck[i].t1) {
      long long f = d->stuck[i].t0 - (d->stuck[i].t0 % d->update_ms);
      if (f < tq) tq = f;
    }
  long long base = -1;
  for (int i = 0; i < d->nresets; i++)
    if (d->resets[i] <= tq && d->resets[i] > base) base = d->resets[i];
  long long from = base >= 0 ? base : (d->nsegs ? d->segs[0].t : tq);
  unsigned long long start = base >= 0 ? 0 : d->offset;
  return start + (tq > from ? integrate_uj(d, from, tq) / 1000ULL : 0);
}

static nvmlReturn_t check(nvmlDevice_t dev) {
  if (!g_init) return NVML_ERROR_UNINITIALIZED;
  load_control();
  if (dev < &g_dev[0] || dev >= &g_dev[g_count]) return NVML_ERROR_INVALID_ARGUMENT;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlInit_v2(void) {
  load_control();
  if (g_fail_init) return g_fail_init;
  g_init++;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlShutdown(void) {
  if (!g_init) return NVML_ERROR_UNINITIALIZED;
  g_init--;
  return NVML_SUCCESS;
}

const char *nvmlErrorString(nvmlReturn_t r) {
  switch (r) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    default: return "Unknown Error";
  }
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
  if (!g_init) return NVML_ERROR_UNINITIALIZED;
  if (!count) return NVML_ERROR_INVALID_ARGUMENT;
  load_control();
  *count = g_count;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
  if (!g_init) return NVML_ERROR_UNINITIALIZED;
  load_control();
  if (!device || index >= g_count) return NVML_ERROR_INVALID_ARGUMENT;
  *device = &g_dev[index];
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t dev, char *name, unsigned int length) {
  nvmlReturn_t r = check(dev);
  if (r) return r;
  if (!name) return NVML_ERROR_INVALID_ARGUMENT;
  if (strlen(dev->name) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
  strcpy(name, dev->name);
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t dev, nvmlMemory_t *mem) {
  nvmlReturn_t r = check(dev);
  if (r) return r;
  if (!mem) return NVML_ERROR_INVALID_ARGUMENT;
  mem->total = dev->mem_total;
  mem->used = dev->mem_used;
  mem->free = dev->mem_total - dev->mem_used;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t dev, unsigned long long *energy) {
  nvmlReturn_t r = check(dev);
  if (r) return r;
  if (!energy) return NVML_ERROR_INVALID_ARGUMENT;
  if (dev->energy_mode == 1) return NVML_ERROR_NOT_SUPPORTED;
  if (dev->energy_mode == 2) return NVML_ERROR_UNKNOWN;
  *energy = counter_at(dev, now_ms());
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t dev, unsigned int *power) {
  nvmlReturn_t r = check(dev);
  if (r) return r;
  if (!power) return NVML_ERROR_INVALID_ARGUMENT;
  if (!dev->power_ok) return NVML_ERROR_NOT_SUPPORTED;
  const seg_t *s = seg_at(dev, now_ms());
  *power = s ? s->mw : 0;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t dev, unsigned int *limit) {
  nvmlReturn_t r = check(dev);
  if (r) return r;
  if (!limit) return NVML_ERROR_INVALID_ARGUMENT;
  if (dev->limit_mw == 0) return NVML_ERROR_NOT_SUPPORTED;
  *limit = dev->limit_mw;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t dev, nvmlUtilization_t *util) {
  nvmlReturn_t r = check(dev);
  if (r) return r;
  if (!util) return NVML_ERROR_INVALID_ARGUMENT;
  const seg_t *s = seg_at(dev, now_ms());
  util->gpu = s ? s->util : 0;
  util->memory = 0;
  return NVML_SUCCESS;
}

/* Same protocol as NVML: a NULL buffer (or too small a count) reports the count needed. */
nvmlReturn_t nvmlDeviceGetProcessUtilization(nvmlDevice_t dev, nvmlProcessUtilizationSample_t *samples,
                                             unsigned int *count, unsigned long long lastSeen) {
  nvmlReturn_t r = check(dev);
  if (r) return r;
  if (!count) return NVML_ERROR_INVALID_ARGUMENT;
  if (dev->nprocs == 0) return NVML_ERROR_NOT_FOUND; /* as a driver answers when no process ran */
  if (!samples || *count < (unsigned int)dev->nprocs) {
    *count = (unsigned int)dev->nprocs;
    return NVML_ERROR_INSUFFICIENT_SIZE;
  }
  unsigned long long ts = (unsigned long long)now_ms() * 1000ULL;
  unsigned int n = 0;
  for (int i = 0; i < dev->nprocs; i++) {
    if (ts <= lastSeen) continue;
    samples[n].pid = dev->proc_pid[i];
    samples[n].timeStamp = ts;
    samples[n].smUtil = dev->proc_sm[i];
    samples[n].memUtil = samples[n].encUtil = samples[n].decUtil = 0;
    n++;
  }
  *count = n;
  return NVML_SUCCESS;
}

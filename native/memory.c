/*
 * Gives memory that glibc's malloc holds free back to the kernel (malloc_trim). Node's Buffers
 * and V8's backing stores come from malloc; after a burst (a cache filling, a flood of queries),
 * a full garbage collection frees them, but glibc keeps the pages unless the free space is at
 * the top of its heap. On other C libraries, trim() does nothing and says so.
 */
#define NAPI_VERSION 8
#ifndef NODE_GYP_MODULE_NAME
#define NODE_GYP_MODULE_NAME memory
#endif
#include <node_api.h>

#ifdef __GLIBC__
#include <malloc.h>
#endif

/* trim() -> true when memory was given back, false when none was (or this is not glibc). */
static napi_value js_trim(napi_env env, napi_callback_info info) {
  (void)info;
  int released = 0;
#ifdef __GLIBC__
  released = malloc_trim(0);
#endif
  napi_value result;
  napi_get_boolean(env, released != 0, &result);
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"trim", NULL, js_trim, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, 1, props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)

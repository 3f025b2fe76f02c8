# zoostore-config.cmake: zoostore for CMake projects (find_package(zoostore CONFIG)).
#
#   zoostore_sync([PROJECT <dir-or-zoo.toml>] [LOCKED | FROZEN] [OFFLINE] [DEST <dir>]
#                 [ARCH <arch>...])
#       Runs `zoostore sync --locked` (or --frozen) at configure time; a non-zero exit fails the
#       configure with zoostore's own message. Records the destination it placed files under in
#       ZOOSTORE_DEST, zoo.toml's layout in ZOOSTORE_LAYOUT, and re-runs the configure when
#       zoo.toml or zoo.lock change.
#   zoostore_model_dir(<out-var> MODEL <name> [ARCH <arch>] [HEADER <var>] [NAMESPACE <var>])
#       The directory of a model's files for an arch: the layout without its {path}, filled in
#       ({dest}/{model}/{arch} by default, {dest}/{model} with layout = "{model}/{path}", where
#       ARCH changes nothing); the arch defaults to ZOOSTORE_ARCH, else the one
#       CMAKE_SYSTEM_PROCESSOR names (x86_64, aarch64). HEADER and NAMESPACE receive the file
#       name of the <name>_config.hpp `zoostore build` wrote there and its C++ namespace.
#
# ZOOSTORE_EXECUTABLE: the zoostore command: by default the one installed beside this file (in
# the same Python environment, whether or not it is on PATH), else the first on PATH; may be a
# list such as "/usr/bin/python3;-m;zoostore".
include_guard(GLOBAL)
cmake_minimum_required(VERSION 3.19)  # string(JSON)

if(NOT ZOOSTORE_EXECUTABLE)
  # This file is <prefix>/lib/pythonX.Y/site-packages/zoostore/integrations/cmake/ in an
  # installed zoostore (<prefix>/Lib/site-packages/... on Windows): its command is
  # <prefix>/bin/zoostore (<prefix>/Scripts/zoostore.exe), which a configure should run even
  # when another zoostore comes first on PATH, or none is there.
  find_program(ZOOSTORE_EXECUTABLE NAMES zoostore
               HINTS "${CMAKE_CURRENT_LIST_DIR}/../../../../../../bin" "${CMAKE_CURRENT_LIST_DIR}/../../../../../Scripts"
               DOC "the zoostore command")
endif()

function(_zoostore_default_arch out)
  if(ZOOSTORE_ARCH)
    set(arch "${ZOOSTORE_ARCH}")
  else()
    string(TOLOWER "${CMAKE_SYSTEM_PROCESSOR}" arch)
    if(arch MATCHES "^(x86_64|amd64|x64)$")
      set(arch "x86_64")
    elseif(arch MATCHES "^(aarch64|arm64|armv8.*)$")
      set(arch "aarch64")
    endif()
  endif()
  set(${out} "${arch}" PARENT_SCOPE)
endfunction()

# With --json, a failing zoostore prints its error as one JSON document on the last line of
# stderr (docs/json.md); a configure shows its message as text, after any warnings before it.
function(_zoostore_error_text out err)
  string(STRIP "${err}" err)
  string(FIND "${err}" "\n" nl REVERSE)
  if(nl EQUAL -1)
    set(head "")
    set(last "${err}")
  else()
    math(EXPR after "${nl} + 1")
    string(SUBSTRING "${err}" 0 ${after} head)
    string(SUBSTRING "${err}" ${after} -1 last)
  endif()
  string(JSON message ERROR_VARIABLE json_error GET "${last}" error message)
  if(NOT json_error)
    set(err "${head}${message}")
  endif()
  set(${out} "${err}" PARENT_SCOPE)
endfunction()

# What the sync did, and its warnings (which would otherwise vanish with a successful configure).
function(_zoostore_report_sync out)
  string(JSON placed ERROR_VARIABLE json_error LENGTH "${out}" placed)
  string(JSON unchanged ERROR_VARIABLE json_error2 GET "${out}" unchanged)
  string(JSON removed ERROR_VARIABLE json_error3 LENGTH "${out}" removed)
  if(NOT json_error AND NOT json_error2 AND NOT json_error3)
    message(STATUS "zoostore sync: ${placed} placed, ${unchanged} unchanged, ${removed} removed")
  endif()
  string(JSON count ERROR_VARIABLE json_error LENGTH "${out}" warnings)
  if(json_error OR count EQUAL 0)
    return()
  endif()
  math(EXPR last "${count} - 1")
  foreach(i RANGE ${last})
    string(JSON warning GET "${out}" warnings ${i})
    message(WARNING "zoostore sync: ${warning}")
  endforeach()
endfunction()

function(zoostore_sync)
  cmake_parse_arguments(PARSE_ARGV 0 ZS "LOCKED;FROZEN;OFFLINE" "PROJECT;DEST" "ARCH")
  if(ZS_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "zoostore_sync: unknown argument(s) ${ZS_UNPARSED_ARGUMENTS}; expected "
                        "PROJECT <dir>, LOCKED, FROZEN, OFFLINE, DEST <dir>, ARCH <arch>...")
  endif()
  if(ZS_LOCKED AND ZS_FROZEN)
    message(FATAL_ERROR "zoostore_sync: give LOCKED or FROZEN, not both")
  endif()
  if(NOT ZOOSTORE_EXECUTABLE)
    message(FATAL_ERROR "zoostore_sync: the zoostore command was not found on PATH. Install it "
                        "(pip install zoostore) or configure with -DZOOSTORE_EXECUTABLE=/path/to/zoostore")
  endif()
  if(NOT ZS_PROJECT)
    set(ZS_PROJECT "${CMAKE_CURRENT_SOURCE_DIR}")
  endif()
  get_filename_component(project "${ZS_PROJECT}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
  set(cmd ${ZOOSTORE_EXECUTABLE} sync --json --project "${project}")
  if(ZS_FROZEN)
    list(APPEND cmd --frozen)
  else()
    list(APPEND cmd --locked)  # the default: a configure never rewrites zoo.lock
  endif()
  if(ZS_OFFLINE)
    list(APPEND cmd --offline)
  endif()
  if(ZS_DEST)
    get_filename_component(dest "${ZS_DEST}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
    list(APPEND cmd --dest "${dest}")
  endif()
  foreach(arch IN LISTS ZS_ARCH)
    list(APPEND cmd --arch "${arch}")
  endforeach()
  message(STATUS "zoostore sync: ${project}")
  execute_process(COMMAND ${cmd} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    _zoostore_error_text(err "${err}")
    message(FATAL_ERROR "zoostore sync failed (exit ${rc}) for ${project}:\n${err}")
  endif()
  _zoostore_report_sync("${out}")
  string(JSON dest ERROR_VARIABLE json_error GET "${out}" dest)
  if(json_error)
    message(FATAL_ERROR "zoostore_sync: cannot read the destination from `zoostore sync --json` "
                        "(${json_error}); got:\n${out}")
  endif()
  set(ZOOSTORE_DEST "${dest}" CACHE INTERNAL "where zoostore_sync placed the models")
  string(JSON layout ERROR_VARIABLE json_error GET "${out}" layout)
  if(json_error)
    set(layout "{model}/{arch}/{path}")  # a zoostore from before layouts
  endif()
  set(ZOOSTORE_LAYOUT "${layout}" CACHE INTERNAL "zoo.toml's layout: where sync placed each file")
  if(IS_DIRECTORY "${project}")
    set(root "${project}")
  else()
    get_filename_component(root "${project}" DIRECTORY)
  endif()
  foreach(f zoo.toml zoo.lock pyproject.toml)
    if(EXISTS "${root}/${f}")
      set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${root}/${f}")
    endif()
  endforeach()
  # sync's state file: a destination deleted (or re-synced by hand) re-runs the configure too,
  # so `cmake --build` puts the models back instead of building against a missing folder.
  if(EXISTS "${dest}/.zoostore-state.json")
    set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${dest}/.zoostore-state.json")
  endif()
endfunction()

function(zoostore_model_dir out)
  cmake_parse_arguments(PARSE_ARGV 1 ZM "" "MODEL;ARCH;HEADER;NAMESPACE" "")
  if(NOT ZM_MODEL OR ZM_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "zoostore_model_dir: usage zoostore_model_dir(<out-var> MODEL <name> [ARCH <arch>] "
                        "[HEADER <var>] [NAMESPACE <var>])")
  endif()
  if(NOT ZOOSTORE_DEST)
    message(FATAL_ERROR "zoostore_model_dir: no destination known; call zoostore_sync() first")
  endif()
  if(NOT ZM_ARCH)
    _zoostore_default_arch(ZM_ARCH)
  endif()
  set(layout "${ZOOSTORE_LAYOUT}")
  if(NOT layout)
    set(layout "{model}/{arch}/{path}")
  endif()
  # zoostore validates a layout to end with {path}, once: what is before it is the directory.
  string(REPLACE "{path}" "" rel "${layout}")
  string(REGEX REPLACE "/$" "" rel "${rel}")
  string(REPLACE "{model}" "${ZM_MODEL}" rel "${rel}")
  string(REPLACE "{arch}" "${ZM_ARCH}" rel "${rel}")
  if(rel STREQUAL "")
    set(dir "${ZOOSTORE_DEST}")
  else()
    set(dir "${ZOOSTORE_DEST}/${rel}")
  endif()
  if(NOT IS_DIRECTORY "${dir}")
    message(FATAL_ERROR "zoostore_model_dir: ${dir} does not exist: is model '${ZM_MODEL}' in "
                        "zoo.toml and locked for arch '${ZM_ARCH}'? (run `zoostore lock`, then configure again)")
  endif()
  set(${out} "${dir}" PARENT_SCOPE)
  if(ZM_HEADER OR ZM_NAMESPACE)
    # The header's name comes from `zoostore build --name` (or the model's folder), not from the
    # name the model is published under, and a C++ identifier has no '-': read it from the files.
    file(GLOB headers RELATIVE "${dir}" "${dir}/*_config.hpp")
    list(LENGTH headers count)
    if(NOT count EQUAL 1)
      message(FATAL_ERROR "zoostore_model_dir: expected one <name>_config.hpp (written by `zoostore build`) "
                          "in ${dir}, found ${count} ${headers}: is '${ZM_MODEL}' a TVM build from zoostore build?")
    endif()
    string(REGEX REPLACE "_config\\.hpp$" "" ident "${headers}")
    if(ZM_HEADER)
      set(${ZM_HEADER} "${headers}" PARENT_SCOPE)
    endif()
    if(ZM_NAMESPACE)
      set(${ZM_NAMESPACE} "zoostore::models::${ident}" PARENT_SCOPE)
    endif()
  endif()
endfunction()

# A rank that fails while the outputs are written (injected with the test-only variables
# GIGAREG_TEST_FAIL_WRITE_RANK and GIGAREG_TEST_FAIL_WRITE_NAME): the job ends with a non-zero exit
# within TIMEOUT seconds, naming the cause, and leaves nothing in the output directory: no file
# under a final name (the outputs written before the failure included) and no temporary.
#   cmake -DMPIEXEC=... -DNP_FLAG=-n "-DMPI_FLAGS=..." -DCLI=.../gigareg -DDATA=.../shared/data
#         -DWORK=dir -P cli_write_failure.cmake
foreach(v MPIEXEC NP_FLAG CLI DATA WORK)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "${v} is required")
  endif()
endforeach()
set(fixed "${DATA}/templates/fsl_MNI152_T1_2mm.nii.gz")
set(moving "${DATA}/templates/icbm2009_asym_t1_1mm_cropped.nii.gz")
if(NOT EXISTS "${fixed}" OR NOT EXISTS "${moving}")
  message("gigareg-test-skipped: real data not found under ${DATA}/templates")
  return()
endif()
file(REMOVE_RECURSE "${WORK}")
set(args register -d 3 -t Greedy[0.25,2,1] -m CC[${fixed},${moving},1,2] -c [2,1e-6,10] -f 2
  -s 1vox --device cpu -v 0)

# case: failing rank, path fragment of the write that fails, warp extension
# (the first file written; the last one, after two others joined the output set; a .nii field;
# a .zarr field after a .zarr store joined the set)
set(n 0)
foreach(case "1;1Warp;.nii.gz" "2;warped;.nii.gz" "1;InverseWarp;.nii" "2;InverseWarp;.zarr")
  list(GET case 0 rank)
  list(GET case 1 name)
  list(GET case 2 ext)
  math(EXPR n "${n} + 1")
  set(dir "${WORK}/case${n}")
  string(TIMESTAMP t0 "%s")
  execute_process(
    COMMAND ${MPIEXEC} ${NP_FLAG} 3 ${MPI_FLAGS} -x OMP_NUM_THREADS=1
            -x GIGAREG_TEST_FAIL_WRITE_RANK=${rank} -x GIGAREG_TEST_FAIL_WRITE_NAME=${name}
            ${CLI} ${args} --warp-extension ${ext} -o [${dir}/,${dir}/warped.nii.gz]
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
  string(TIMESTAMP t1 "%s")
  math(EXPR seconds "${t1} - ${t0}")
  if(rc MATCHES "timeout" OR rc MATCHES "[Tt]erminated")
    message(FATAL_ERROR "rank ${rank} failing on ${name}: the job hung (${rc})\n${out}\n${err}")
  endif()
  if(rc EQUAL 0)
    message(FATAL_ERROR "rank ${rank} failing on ${name}: the job exited 0\n${out}\n${err}")
  endif()
  if(NOT err MATCHES "write failure injected on rank ${rank}")
    message(FATAL_ERROR "rank ${rank} failing on ${name}: the cause is not reported\n${out}\n${err}")
  endif()
  file(GLOB left LIST_DIRECTORIES true "${dir}/*" "${dir}/.*")
  if(left)
    message(FATAL_ERROR "rank ${rank} failing on ${name}: files left behind: ${left}\n${err}")
  endif()
  string(REGEX MATCH "gigareg: rank [0-9]+ failed: [^\n]*" line "${err}")
  message(STATUS "rank ${rank} failing on ${name}${ext}: exit ${rc} after ${seconds} s, nothing left (${line})")
endforeach()

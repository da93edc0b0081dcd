# Issue 18, item 7: ranks of one `mpirun gigareg register` that read different files under the
# same names (here: started in different working directories, mpirun's MPMD form with --wdir)
# must all fail within seconds with a message naming the file, instead of hanging (grids that
# differ) or mixing two images silently (grids that agree).
#   cmake -DMPIEXEC=... -DNP_FLAG=-n "-DMPI_FLAGS=..." -DCLI=.../gigareg -DDATA=.../shared/data
#         -DWORK=dir -P cli_mpirun_inputs.cmake
foreach(v MPIEXEC NP_FLAG CLI DATA WORK)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "${v} is required")
  endif()
endforeach()
set(t2mm "${DATA}/templates/fsl_MNI152_T1_2mm.nii.gz")
set(icbm "${DATA}/templates/icbm2009_asym_t1_1mm_cropped.nii.gz")
if(NOT EXISTS "${t2mm}" OR NOT EXISTS "${icbm}")
  message("gigareg-test-skipped: real data not found under ${DATA}/templates")
  return()
endif()
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}/a" "${WORK}/same_grid" "${WORK}/other_grid")
# a: the pair. same_grid: another image resampled onto the fixed grid. other_grid: another grid.
file(CREATE_LINK "${t2mm}" "${WORK}/a/fixed.nii.gz" SYMBOLIC)
file(CREATE_LINK "${t2mm}" "${WORK}/a/moving.nii.gz" SYMBOLIC)
file(CREATE_LINK "${t2mm}" "${WORK}/same_grid/moving.nii.gz" SYMBOLIC)
file(CREATE_LINK "${t2mm}" "${WORK}/other_grid/moving.nii.gz" SYMBOLIC)
file(CREATE_LINK "${icbm}" "${WORK}/other_grid/fixed.nii.gz" SYMBOLIC)
execute_process(COMMAND ${CMAKE_COMMAND} -E env GIGAREG_DISTRIBUTED=0
                  ${CLI} apply -i ${icbm} -r ${t2mm} -o ${WORK}/same_grid/fixed.nii.gz
                RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "making the input failed: ${err}")
endif()
set(args register -d 3 -t Affine[0.1] -m MeanSquares[fixed.nii.gz,moving.nii.gz,1]
  -c [5,1e-6,10] -f 2 -s 1vox --device cpu -v 0 --no-qc)
foreach(other same_grid other_grid)
  string(TIMESTAMP t0 "%s")
  execute_process(
    COMMAND ${MPIEXEC} ${MPI_FLAGS}
            ${NP_FLAG} 1 --wdir ${WORK}/a ${CLI} ${args} -o ${WORK}/out_${other}/ :
            ${NP_FLAG} 1 --wdir ${WORK}/${other} ${CLI} ${args} -o ${WORK}/out_${other}/
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 60)
  string(TIMESTAMP t1 "%s")
  math(EXPR seconds "${t1} - ${t0}")
  set(all "${out}\n${err}")
  if(rc MATCHES "timeout" OR rc MATCHES "[Tt]erminated")
    message(FATAL_ERROR "${other}: the job hung (${rc})\n${all}")
  endif()
  if(rc EQUAL 0)
    message(FATAL_ERROR "${other}: the job exited 0 with ranks reading different files\n${all}")
  endif()
  if(NOT all MATCHES "fixed.nii.gz: the processes of this distributed run read different files")
    message(FATAL_ERROR "${other}: no message naming the file\n${all}")
  endif()
  if(EXISTS "${WORK}/out_${other}/0GenericAffine.mat")
    message(FATAL_ERROR "${other}: an output was written")
  endif()
  message(STATUS "${other}: failed in about ${seconds} s as expected")
endforeach()

/* What a cold verify at 1M waits for, without facevault around it: a slot of a 64 MB table (the
 * subject index), then the 2 KB row it names in a 2 GB buffer (the gallery), both on huge pages,
 * scored against a warm probe. Each mode prefetches the row differently (none, T0, T1, T2, T1 in
 * reverse); the modes take turns, 4,000 random lookups each.
 *
 *   gcc -O2 -mavx2 -mfma bench/rowread.c -o target/rowread && target/rowread
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <sys/mman.h>
#include <time.h>
#include <immintrin.h>
static inline double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e9+t.tv_nsec;}
static int cmp(const void*a,const void*b){double x=*(double*)a,y=*(double*)b;return x<y?-1:x>y;}
#define M 5
#define K 4000
int main(){
  size_t rows=1000000, dim=512, bytes=rows*dim*4;
  float*g=mmap(0,bytes,PROT_READ|PROT_WRITE,MAP_PRIVATE|MAP_ANONYMOUS,-1,0);
  madvise(g,bytes,MADV_HUGEPAGE);
  for(size_t i=0;i<rows*dim;i++) g[i]=(float)(i%97);
  size_t slots=2*1024*1024; uint64_t*tab=mmap(0,slots*32,PROT_READ|PROT_WRITE,MAP_PRIVATE|MAP_ANONYMOUS,-1,0);
  madvise(tab,slots*32,MADV_HUGEPAGE);
  for(size_t i=0;i<slots;i++) tab[i*4]=(i*2654435761u)%rows;
  float probe[512]; for(int i=0;i<512;i++) probe[i]=1.0f/(i+1);
  static double t[M][K]; uint64_t seed=88172645463325252ull; float acc=0;
  for(int k=0;k<K;k++) for(int mode=0;mode<M;mode++){
    seed^=seed<<13;seed^=seed>>7;seed^=seed<<17;
    size_t slot=seed%slots;
    double t0=now();
    size_t r = tab[slot*4];
    const float*row=g+r*dim;
    if(mode==1) for(int l=0;l<32;l++) _mm_prefetch((const char*)(row+l*16),_MM_HINT_T0);
    if(mode==2) for(int l=0;l<32;l++) _mm_prefetch((const char*)(row+l*16),_MM_HINT_T1);
    if(mode==3) for(int l=0;l<32;l++) _mm_prefetch((const char*)(row+l*16),_MM_HINT_T2);
    if(mode==4) for(int l=31;l>=0;l--) _mm_prefetch((const char*)(row+l*16),_MM_HINT_T1);
    __m256 s=_mm256_setzero_ps();
    for(int i=0;i<512;i+=8) s=_mm256_fmadd_ps(_mm256_loadu_ps(row+i),_mm256_loadu_ps(probe+i),s);
    float o[8];_mm256_storeu_ps(o,s); acc+=o[0];
    t[mode][k]=now()-t0;
  }
  const char*names[]={"none","T0","T1","T2","T1 reversed"};
  for(int m=0;m<M;m++){qsort(t[m],K,sizeof(double),cmp);printf("%-12s p50 %.0f ns p90 %.0f\n",names[m],t[m][K/2],t[m][K*9/10]);}
  printf("%f\n",acc);
}

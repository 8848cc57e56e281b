/*
 * A blkif back end written with Xen's own io/ring.h macros, for pvkit's ring
 * interop test.
 *
 * Usage: blkif-back NPAGES < ring-pages > ring-pages-after 2> log
 *
 * Reads NPAGES pages holding a blkif shared ring that pvkit's TypeScript
 * front ring wrote, attaches a back ring at the published rsp_prod (so state
 * carries over from one run to the next through the page alone), consumes
 * every request with RING_COPY_REQUEST, answers each with a response computed
 * from the request, pushes with RING_PUSH_RESPONSES_AND_CHECK_NOTIFY, re-arms
 * with RING_FINAL_CHECK_FOR_REQUESTS, and writes the pages back out.
 *
 * The log has one line per request ("REQ op nr handle id sector gref:first:last ...")
 * and one per push ("PUSH notify").
 */
#include <unistd.h>

static int16_t status_for(const blkif_request_t *req)
{
    /* Any function of the request will do, as long as the TS side can compute it too. */
    if (req->operation == BLKIF_OP_FLUSH_DISKCACHE)
        return BLKIF_RSP_EOPNOTSUPP;
    return (req->sector_number % 3 == 0) ? BLKIF_RSP_ERROR : BLKIF_RSP_OKAY;
}

static void read_all(void *buf, size_t len)
{
    for (size_t done = 0; done < len; ) {
        ssize_t n = read(0, (char *)buf + done, len - done);
        if (n <= 0) { fprintf(stderr, "short read\n"); exit(2); }
        done += (size_t)n;
    }
}

int main(int argc, char **argv)
{
    size_t npages = argc > 1 ? strtoul(argv[1], NULL, 10) : 1;
    size_t len = npages * 4096;
    blkif_sring_t *sring = aligned_alloc(4096, len);
    blkif_back_ring_t back;
    int notify, more;

    read_all(sring, len);
    BACK_RING_ATTACH(&back, sring, sring->rsp_prod, len);
    fprintf(stderr, "SIZE %u\n", RING_SIZE(&back));

    do {
        while (RING_HAS_UNCONSUMED_REQUESTS(&back)) {
            blkif_request_t req;
            blkif_response_t *rsp;

            if (RING_REQUEST_CONS_OVERFLOW(&back, back.req_cons)) {
                fprintf(stderr, "overflow\n");
                return 3;
            }
            RING_COPY_REQUEST(&back, back.req_cons, &req);
            back.req_cons++;
            fprintf(stderr, "REQ %u %u %u %llu %llu", req.operation, req.nr_segments, req.handle,
                    (unsigned long long)req.id, (unsigned long long)req.sector_number);
            for (unsigned i = 0; i < req.nr_segments && i < BLKIF_MAX_SEGMENTS_PER_REQUEST; i++)
                fprintf(stderr, " %u:%u:%u", req.seg[i].gref, req.seg[i].first_sect, req.seg[i].last_sect);
            fprintf(stderr, "\n");

            rsp = RING_GET_RESPONSE(&back, back.rsp_prod_pvt);
            memset(rsp, 0, sizeof(*rsp));
            rsp->id = req.id;
            rsp->operation = req.operation;
            rsp->status = status_for(&req);
            back.rsp_prod_pvt++;
        }
        RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(&back, notify);
        fprintf(stderr, "PUSH %d\n", notify);
        RING_FINAL_CHECK_FOR_REQUESTS(&back, more);
    } while (more);

    fwrite(sring, 1, len, stdout);
    return 0;
}

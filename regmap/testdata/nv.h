/* A few registers of NVIDIA GPUs' BAR0, under the names the public
 * envytools and nouveau documentation gives them: enough to name the
 * accesses of trace/testdata/kernel.log. */
#define NV_PMC_BOOT_0			0x00000000
#define NV_PMC_BOOT_1			0x00000004
#define NV_PMC_ENABLE			0x00000200
#define   NV_PMC_ENABLE_PMEDIA		BIT(4)
#define   NV_PMC_ENABLE_PFIFO		BIT(8)
#define   NV_PMC_ENABLE_PGRAPH		BIT(12)
#define   NV_PMC_ENABLE_PVIDEO		BIT(28)
#define NV_PFIFO_INTR			0x00002100
#define NV_PEXTDEV_BOOT_0		0x00101000
#define   NV_PEXTDEV_BOOT_0_STRAP	GENMASK(31, 28)
#define NV_PROM_DATA(n)			(0x00300000 + (n))
#define NV_PDISPLAY_INTR_EN		0x00610200
#define   NV_PDISPLAY_INTR_EN_VBLANK	BIT(0)
#define   NV_PDISPLAY_INTR_EN_HOTPLUG	BIT(1)
